"""Feature specification: checks before any data is read, and the canonical hash."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_adapters.errors import FeatureSpecError
from fhir_adapters.features import FeatureSpec, canonical_json
from tests.fhir_adapters.helpers import spec_doc

ROOT = Path(__file__).resolve().parents[2]
BMI = {
    "name": "bmi",
    "events": "observation",
    "codes": [{"system": "http://loinc.org", "code": "39156-5"}],
    "aggregation": "latest",
    "unit": "kg/m2",
}


def test_hash_is_canonical() -> None:
    doc = spec_doc([BMI, {"name": "age", "type": "age"}])
    spec = FeatureSpec.from_dict(doc)
    h = spec.canonical_hash()
    assert h.startswith("sha256:") and len(h) == 7 + 64
    # key order, whitespace and 1 vs 1.0 do not matter
    reordered = json.loads(
        json.dumps(doc, sort_keys=True), object_pairs_hook=lambda kv: dict(reversed(kv))
    )
    assert FeatureSpec.from_json(json.dumps(reordered, indent=4)).canonical_hash() == h
    assert canonical_json({"a": 1.0, "b": [2.50]}) == b'{"a":1,"b":[2.5]}'
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    # any change to what is computed changes the hash
    changed = copy.deepcopy(doc)
    changed["recipe"]["features"][0]["aggregation"] = "max"
    assert FeatureSpec.from_dict(changed).canonical_hash() != h
    changed = copy.deepcopy(doc)
    changed["views"]["observation"]["select"][0]["column"][2]["path"] = (
        "value.ofType(Quantity).value + 1"
    )
    assert FeatureSpec.from_dict(changed).canonical_hash() != h


def test_example_specs_parse() -> None:
    from fhir_adapters.testing.synthetic import synthetic_spec

    diabetes = FeatureSpec.from_file(ROOT / "docs/examples/diabetes.spec.json")
    assert diabetes.feature_names == [
        "bmi",
        "hba1c",
        "systolic_bp",
        "age",
        "sex=female",
        "sex=male",
    ]
    on_disk = FeatureSpec.from_file(ROOT / "docs/examples/synthetic.spec.json")
    assert on_disk.canonical_hash() == synthetic_spec().canonical_hash()


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.update(specVersion=2), "specVersion"),
        (lambda d: d.update(extra=1), "unknown key"),
        (lambda d: d["recipe"]["features"][0].update(aggregation="median"), "aggregation"),
        (lambda d: d["recipe"]["features"][0].update(events="labs"), "unknown events"),
        (lambda d: d["recipe"]["features"][0].update(codes=[]), "codes"),
        (lambda d: d["recipe"]["features"][0].update(window={"from": 0, "to": -10}), "after"),
        (lambda d: d["recipe"]["features"][0].update(analyte="unobtainium"), "analyte"),
        (lambda d: d["recipe"]["features"].append(dict(BMI)), "unique"),
        (lambda d: d["recipe"]["patients"].update(key="nope"), "no column"),
        (lambda d: d["recipe"]["index"].update(type="random"), "index.type"),
        (lambda d: d["recipe"]["index"].update(date="2020-02-30"), "date"),
        (
            lambda d: d["views"]["observation"]["select"][0]["column"][0].update(path="subject.("),
            "views.observation",
        ),
        (
            lambda d: d["recipe"]["features"].append(
                {"name": "x", "type": "one_hot", "attribute": "sex", "categories": []}
            ),
            "categories",
        ),
        (lambda d: d.update(conceptMaps=[{"resourceType": "ValueSet"}]), "conceptMaps"),
    ],
)
def test_invalid_specs_are_refused_with_a_pointer(mutate, fragment: str) -> None:  # type: ignore[no-untyped-def]
    doc = spec_doc([copy.deepcopy(BMI)])
    mutate(doc)
    with pytest.raises(FeatureSpecError) as err:
        FeatureSpec.from_dict(doc)
    assert err.value.code == "FEATURE_SPEC_INVALID"
    assert fragment in str(err.value)


def test_not_json() -> None:
    with pytest.raises(FeatureSpecError):
        FeatureSpec.from_json(b"{nope")
    with pytest.raises(FeatureSpecError):
        FeatureSpec.from_dict(spec_doc([{**BMI, "window": {"from": float("nan")}}]))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_canonical_json_ignores_key_order_and_round_trips(doc: dict) -> None:
    def reverse(value: object) -> object:
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reverse(v) for v in value]
        return value

    canonical = canonical_json(doc)
    assert canonical_json(reverse(doc)) == canonical
    assert canonical_json(json.loads(canonical)) == canonical
