"""Small builders for hand-made FHIR resources used across the fhir_adapters tests."""

from __future__ import annotations

import copy
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def patient(pid: str, birth: str = "1970-01-01", gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": birth, "gender": gender}


def obs(
    oid: str,
    pid: str,
    code: str,
    value: float | None,
    unit: str | None,
    when: str,
    *,
    system: str = LOINC,
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
    }
    if value is not None:
        q: dict[str, Any] = {"value": value}
        if unit is not None:
            q.update(unit=unit, system="http://unitsofmeasure.org", code=unit)
        r["valueQuantity"] = q
    return r


def condition(cid: str, pid: str, code: str, onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
    }


PATIENT_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Patient",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "birth_date", "path": "birthDate"},
                {"name": "gender", "path": "gender"},
            ]
        }
    ],
}

OBS_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Observation",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "time", "path": "effective.ofType(dateTime)"},
                {"name": "value", "path": "value.ofType(Quantity).value"},
                {"name": "unit", "path": "value.ofType(Quantity).code"},
            ]
        },
        {
            "forEach": "code.coding",
            "column": [{"name": "system", "path": "system"}, {"name": "code", "path": "code"}],
        },
    ],
}

COND_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Condition",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "time", "path": "onset.ofType(dateTime)"},
            ]
        },
        {
            "forEach": "code.coding",
            "column": [{"name": "system", "path": "system"}, {"name": "code", "path": "code"}],
        },
    ],
}


def spec_doc(features: list[dict[str, Any]], **recipe: Any) -> dict[str, Any]:
    """A minimal spec: patient/observation/condition views, fixed index 2020-01-01."""
    doc: dict[str, Any] = {
        "specVersion": 1,
        "name": "test",
        "version": "1.0.0",
        "views": copy.deepcopy(
            {"patient": PATIENT_VIEW, "observation": OBS_VIEW, "condition": COND_VIEW}
        ),
        "recipe": {
            "patients": {
                "view": "patient",
                "key": "id",
                "birthDate": "birth_date",
                "sex": "gender",
            },
            "events": {
                "observation": {
                    "view": "observation",
                    "patient": "patient",
                    "time": "time",
                    "system": "system",
                    "code": "code",
                    "value": "value",
                    "unit": "unit",
                },
                "condition": {
                    "view": "condition",
                    "patient": "patient",
                    "time": "time",
                    "system": "system",
                    "code": "code",
                },
            },
            "index": {"type": "fixed", "date": "2020-01-01"},
            "features": features,
        },
    }
    for key, value in recipe.items():
        if key == "conceptMaps":
            doc["conceptMaps"] = value
        else:
            doc["recipe"][key] = value
    return doc
