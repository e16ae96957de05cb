"""Differential test on real data: our compiler vs fhirpathpy on Synthea R4 resources.

fhirpathpy (MIT, the reference Python implementation) is slow but independent;
where both implement an expression, both must give the same answer on real
records. The expressions cover navigation, choice types, where/select/exists,
extensions, strings, arithmetic and date comparison. Values are compared after
normalising fhirpathpy's wrappers (Decimal, FP_DateTime) to plain JSON.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapters.fhirpath import Context, Temporal, compile_expression
from tests.conftest import shared_path

fhirpathpy = pytest.importorskip("fhirpathpy")
from fhirpathpy.models import models  # noqa: E402

EXPRESSIONS: dict[str, list[str]] = {
    "Patient": [
        "name.given",
        "name.where(use = 'official').family",
        "name.given.count()",
        "telecom.where(system = 'phone').value",
        "address.city | address.state",
        "extension.url",
        "extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-race')"
        ".extension('ombCategory').value.ofType(Coding).code",
        "birthDate < @2000-01-01",
        "identifier.type.coding.code.distinct()",
        "name.exists(use = 'official')",
        "multipleBirth.ofType(boolean)",
        "deceased.exists()",
        "address.line.count() > 0 and address.postalCode.exists()",
        "communication.language.coding.code.skip(0).take(1)",
        "name.select(given.first() & ' ' & family)",
        "gender in ('male' | 'female')",
        "name.given.union(name.family).count()",
        "identifier.where(system.startsWith('http')).value.count()",
        "maritalStatus.coding.code ~ 'M'",
    ],
    "Observation": [
        "value.ofType(Quantity).value * 2",
        "component.value.ofType(Quantity).value",
        "component.code.coding.code",
        "effective.ofType(dateTime) > @2015-01-01",
        "category.coding.code = 'vital-signs'",
        "value.ofType(CodeableConcept).coding.code",
        "value.ofType(Quantity).value.round(1)",
        "value.unit",
        "subject.reference.replace('urn:uuid:', '')",
        "iif(value.exists(), 'v', 'nv')",
        "status != 'final'",
        "code.coding.where(system = 'http://loinc.org').code.first()",
        "component.where(code.coding.code = '8480-6').value.ofType(Quantity).value",
        "value.ofType(Quantity).value > 5 implies status = 'final'",
        "code.coding.display.lower().contains('pressure')",
    ],
    "Condition": [
        "code.coding.code",
        "onset.ofType(dateTime) <= abatement.ofType(dateTime)",
        "clinicalStatus.coding.code.first()",
        "subject.reference.startsWith('urn:uuid:')",
    ],
}


def _norm(x: Any) -> Any:
    if isinstance(x, Decimal):
        return float(x)
    if isinstance(x, Temporal):
        return x.text
    if hasattr(x, "data"):
        return _norm(x.data)
    if type(x).__name__.startswith("FP_"):
        return str(x)
    return x


def _resources() -> dict[str, list[dict[str, Any]]]:
    folder = shared_path("synthea")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(folder).glob("*.json"))[:3]:
        bundle = orjson.loads(path.read_bytes())
        for entry in bundle.get("entry", []):
            res = entry.get("resource", {})
            by_type.setdefault(res.get("resourceType"), []).append(res)
    return by_type


@pytest.fixture(scope="module")
def synthea() -> dict[str, list[dict[str, Any]]]:
    return _resources()


@pytest.mark.parametrize(
    ("rtype", "expr"),
    [(t, e) for t, es in EXPRESSIONS.items() for e in es],
)
def test_same_results_as_fhirpathpy(
    synthea: dict[str, list[dict[str, Any]]], rtype: str, expr: str
) -> None:
    ours = compile_expression(expr)
    theirs = fhirpathpy.compile(expr, models["r4"])
    sample = list(itertools.islice(synthea.get(rtype, []), 20))
    assert sample, f"no {rtype} in the Synthea sample"
    for res in sample:
        a = [_norm(v) for v in ours.fn([res], Context(res))]
        b = [_norm(v) for v in theirs([res], {})]
        assert a == pytest.approx(b) if a and isinstance(a[0], float) else a == b, (
            f"{expr} differs on {rtype}"
        )
