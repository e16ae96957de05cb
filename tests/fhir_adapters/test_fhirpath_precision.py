"""Boundaries with precision, Quantity comparison with UCUM conversion, primitive extensions.

Each case is a minimal resource whose expected value is written from the
FHIRPath specification (boundary examples in §5.7, quantity equality in
§6.1.1). fhirpathpy implements neither boundaries nor unit conversion, so the
differential half of this file covers what it does implement: primitive
extensions read through the ``_name`` sibling key (with its R4 model).
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_adapters.fhirpath import compile_expression

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "birthDate": "1965-01-13",
    "_birthDate": {
        "extension": [
            {"url": "http://example.org/accuracy", "valueCode": "D"},
        ]
    },
    "name": [
        {
            "given": ["Mari", "Liis"],
            "_given": [None, {"extension": [{"url": "u", "valueString": "x"}]}],
        }
    ],
}
OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"text": "x"},
    "effectiveDateTime": "2023-07-02T09:15:30+03:00",
    "_effectiveDateTime": {"extension": [{"url": "http://example.org/e", "valueBoolean": True}]},
    "valueQuantity": {
        "value": 6,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    },
}
ENC = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "finished",
    "period": {"start": "2023-07-02T08:00:00+03:00", "end": "2023-07"},
}


def ev(expr: str, resource: Any) -> list[Any]:
    return [
        str(v) if type(v).__name__ in ("Temporal", "Quantity") else v
        for v in compile_expression(expr).evaluate(resource)
    ]


@pytest.mark.parametrize(
    ("expr", "resource", "expected"),
    [
        ("birthDate.highBoundary(6)", PATIENT, ["1965-01"]),
        ("birthDate.lowBoundary(4)", PATIENT, ["1965"]),
        ("birthDate.highBoundary()", PATIENT, ["1965-01-13"]),
        ("birthDate.highBoundary(10)", PATIENT, []),  # a Date has no hours
        ("birthDate.lowBoundary(5)", PATIENT, []),  # not a precision
        ("effective.ofType(dateTime).lowBoundary(4)", OBS, ["2023"]),
        ("effective.ofType(dateTime).lowBoundary(8)", OBS, ["2023-07-02"]),
        ("effective.ofType(dateTime).highBoundary(12)", OBS, ["2023-07-02T09:15+03:00"]),
        ("effective.ofType(dateTime).highBoundary(14)", OBS, ["2023-07-02T09:15:30+03:00"]),
        ("effective.ofType(dateTime).highBoundary()", OBS, ["2023-07-02T09:15:30.999+03:00"]),
        ("@2014.highBoundary(6)", PATIENT, ["2014-12"]),
        ("@2014-01-01T08.highBoundary(17)", PATIENT, ["2014-01-01T08:59:59.999-12:00"]),
        ("@T10:30.highBoundary(9)", PATIENT, ["10:30:59.999"]),
        ("@T10:30.lowBoundary(4)", PATIENT, ["10:30"]),
        ("1.587.lowBoundary()", PATIENT, [1.5865]),
        ("1.587.highBoundary()", PATIENT, [1.5875]),
        ("(-1.587).lowBoundary()", PATIENT, [-1.5875]),
        ("1.587.lowBoundary(2)", PATIENT, [1.58]),
        ("1.587.highBoundary(2)", PATIENT, [1.59]),
        ("1.587.lowBoundary(6)", PATIENT, [1.5865]),
        ("1.587.lowBoundary(0)", PATIENT, [1.0]),
        ("1.587.lowBoundary(40)", PATIENT, []),
        ("1.587.lowBoundary(-1)", PATIENT, []),
        ("period.lowBoundary()", ENC, ["2023-07-02T08:00:00.000+03:00"]),
        ("period.highBoundary()", ENC, ["2023-07-31T23:59:59.999-12:00"]),
        ("period.lowBoundary(8)", ENC, ["2023-07-02"]),
        ("value.ofType(Quantity).lowBoundary()", OBS, ["Quantity(5.5, 'mg')"]),
    ],
)
def test_boundaries_honour_their_precision(expr: str, resource: Any, expected: list[Any]) -> None:
    assert ev(expr, resource) == expected


def test_a_period_without_end_has_no_high_boundary() -> None:
    assert ev("period.highBoundary()", {**ENC, "period": {"start": "2023"}}) == []


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("value.ofType(Quantity) > 5 'mg'", [True]),
        ("value.ofType(Quantity) > 5000 'ug'", [True]),
        ("value.ofType(Quantity) < 0.007 'g'", [True]),
        ("value.ofType(Quantity) = 6000 'ug'", [True]),
        ("value.ofType(Quantity) = 6 'mL'", [False]),  # other dimension: not equal
        ("value.ofType(Quantity) > 5 'mL'", []),  # other dimension: not comparable
        ("5 'mg' = 5000 'ug'", [True]),
        ("5 'mg' != 5000 'ug'", [False]),
        ("5 'mg' < 6 'g'", [True]),
        ("1 'g' > 500 'mg'", [True]),
        ("1 year = 12 months", [True]),
        ("1 day = 24 hours", [True]),
        ("1 week = 7 'd'", [True]),
        ("1 year = 1 'd'", [False]),
    ],
)
def test_quantities_compare_after_ucum_conversion(expr: str, expected: list[Any]) -> None:
    assert ev(expr, OBS) == expected


def test_a_quantity_with_a_comparator_has_no_single_value() -> None:
    obs = {**OBS, "valueQuantity": {**OBS["valueQuantity"], "comparator": "<"}}
    assert ev("value.ofType(Quantity) > 5 'mg'", obs) == []
    assert ev("value.ofType(Quantity) = 6 'mg'", obs) == []


@pytest.mark.parametrize(
    ("expr", "resource", "expected"),
    [
        ("birthDate.extension('http://example.org/accuracy').value", PATIENT, ["D"]),
        ("Patient.birthDate.extension('http://example.org/accuracy').valueCode", PATIENT, ["D"]),
        ("name.given.extension('u').value", PATIENT, ["x"]),
        ("effective.ofType(dateTime).extension('http://example.org/e').value", OBS, [True]),
        ("birthDate.extension('http://other').value", PATIENT, []),
    ],
)
def test_primitive_extensions_are_read_from_the_sibling_key(
    expr: str, resource: Any, expected: list[Any]
) -> None:
    assert ev(expr, resource) == expected


fhirpathpy = pytest.importorskip("fhirpathpy")


@pytest.mark.parametrize(
    ("expr", "resource"),
    [
        ("Patient.birthDate.extension('http://example.org/accuracy').value", PATIENT),
        ("Patient.birthDate.extension('http://example.org/accuracy').valueCode", PATIENT),
        ("Patient.name.given.extension('u').value", PATIENT),
        ("Patient.birthDate.extension('http://other').value", PATIENT),
    ],
)
def test_primitive_extensions_agree_with_fhirpathpy(expr: str, resource: Any) -> None:
    from fhirpathpy.models import models

    theirs = fhirpathpy.evaluate(resource, expr, {}, models["r4"])
    assert ev(expr, resource) == theirs
