"""An Estonian R5 test pack, written from the EE base guide's published examples.

The resources follow the shapes of HL7 Estonia's EE base (FHIR 5.0.0) and
TEHIK's example instances: ``meta.profile`` ``ee-patient``, personal codes in
``https://fhir.ee/sid/pid/est/ni``, the ``ee-date-accuracy-indicator`` and
``ee-patient-age`` extensions on ``_birthDate``, R5 Encounters (``class`` a
list of CodeableConcepts, ``actualPeriod``) and RHK-10 (ICD-10) diagnoses.
Names and codes are invented; the expected values are computed by hand:

* index date 2023-07-02 (fixed);
* ee-p1 born 1983-01-11 (accuracy AAA): 14,782 days -> 14782 / 365.2425 years;
* ee-p2 born "1990-01-01" with accuracy UUA (day and month unknown, so "some
  day in 1990"): counted from the middle of 1990, 2 July: 12,053 days ->
  12053 / 365.2425 = 33.0 years (1 January would give 33.5);
* ee-p3 has no birth date, only ``ee-patient-age`` 42 a: age 42;
* ambulatory (AMB) encounters in the year up to the index day: ee-p1 has
  two (one at 09:00 on the index day itself), ee-p2 one inpatient (IMP) only;
* type 2 diabetes (RHK-10 E11 and below) up to the index day: ee-p1 E11.9
  at 01:00+03:00 on 2 July (1 July in UTC, still 2 July in Tallinn), ee-p2
  E11 known only by ``recordedDate``; ee-p3 I10 only.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapters.errors import FeatureSpecError
from fhir_adapters.features import FeatureSpec, extract_features
from fhir_adapters.fhirpath import compile_expression
from fhir_adapters.stream import ResourceStream

EE_PATIENT = "https://fhir.ee/base/StructureDefinition/ee-patient"
EE_NI = "https://fhir.ee/sid/pid/est/ni"
ACCURACY = "https://fhir.ee/base/StructureDefinition/ee-date-accuracy-indicator"
ACCURACY_CS = "https://fhir.ee/CodeSystem/ee-date-accuracy-indicator"
PATIENT_AGE = "https://fhir.ee/base/StructureDefinition/ee-patient-age"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _patient(
    pid: str, ni: str, gender: str, birth: str | None, ext: dict[str, Any]
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"profile": [EE_PATIENT]},
        "identifier": [{"system": EE_NI, "value": ni}],
        "active": True,
        "name": [{"use": "official", "family": "Tamm", "given": ["Test"]}],
        "gender": gender,
        "_birthDate": {"extension": [ext]},
    }
    if birth is not None:
        p["birthDate"] = birth
    return p


def _accuracy(code: str) -> dict[str, Any]:
    return {"url": ACCURACY, "valueCoding": {"system": ACCURACY_CS, "code": code}}


def _encounter(eid: str, pid: str, cls: str, start: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "completed",
        "class": [{"coding": [{"system": ACT, "code": cls}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "actualPeriod": {"start": start},
    }


def _condition(cid: str, pid: str, code: str, **when: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": ICD10, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        **when,
    }


def resources() -> list[dict[str, Any]]:
    return [
        _patient("ee-p1", "38301105216", "male", "1983-01-11", _accuracy("AAA")),
        # written as a full date, but its accuracy code says only the year is known
        _patient("ee-p2", "49001012233", "female", "1990-01-01", _accuracy("UUA")),
        _patient(
            "ee-p3",
            "38201010000",
            "male",
            None,
            {
                "url": PATIENT_AGE,
                "valueAge": {
                    "value": 42,
                    "unit": "a",
                    "system": "http://unitsofmeasure.org",
                    "code": "a",
                },
            },
        ),
        _encounter("e1", "ee-p1", "AMB", "2023-03-14T10:00:00+02:00"),
        _encounter("e2", "ee-p1", "AMB", "2023-07-02T09:00:00+03:00"),
        _encounter("e3", "ee-p1", "AMB", "2021-01-05T10:00:00+02:00"),  # outside the year
        _encounter("e4", "ee-p2", "IMP", "2023-05-01T08:00:00+03:00"),
        _condition("c1", "ee-p1", "E11.9", onsetDateTime="2023-07-02T01:00:00+03:00"),
        _condition("c2", "ee-p2", "E11", recordedDate="2021-03-01"),
        _condition("c3", "ee-p3", "I10", onsetDateTime="2019-02-01"),
    ]


def _view(
    resource: str,
    columns: list[tuple[str, str]],
    for_each: tuple[str, list[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    select: list[dict[str, Any]] = [{"column": [{"name": n, "path": p} for n, p in columns]}]
    if for_each is not None:
        select.append(
            {"forEach": for_each[0], "column": [{"name": n, "path": p} for n, p in for_each[1]]}
        )
    return {
        "resourceType": "ViewDefinition",
        "resource": resource,
        "status": "active",
        "select": select,
    }


def spec_doc() -> dict[str, Any]:
    age_path = f"birthDate.extension('{PATIENT_AGE}').value.ofType(Age).value"
    return {
        "specVersion": 1,
        "name": "ee-r5",
        "version": "1.0.0",
        "fhirVersion": "5.0.0",
        "views": {
            "patient": _view(
                "Patient",
                [
                    ("id", "getResourceKey()"),
                    ("birth_date", "birthDate"),
                    ("age", age_path),
                    ("accuracy", f"birthDate.extension('{ACCURACY}').value.ofType(Coding).code"),
                    ("gender", "gender"),
                ],
            ),
            "encounter": _view(
                "Encounter",
                [("patient", "subject.getReferenceKey(Patient)"), ("time", "actualPeriod.start")],
                ("class.coding", [("system", "system"), ("code", "code")]),
            ),
            "condition": _view(
                "Condition",
                [
                    ("patient", "subject.getReferenceKey(Patient)"),
                    ("time", "onset.ofType(dateTime)"),
                ],
                ("code.coding", [("system", "system"), ("code", "code")]),
            ),
        },
        "recipe": {
            "patients": {
                "view": "patient",
                "key": "id",
                "birthDate": "birth_date",
                "birthDateAccuracy": "accuracy",
                "age": "age",
                "sex": "gender",
            },
            "events": {
                "encounter": {
                    "view": "encounter",
                    "patient": "patient",
                    "time": "time",
                    "system": "system",
                    "code": "code",
                },
                "condition": {
                    "view": "condition",
                    "patient": "patient",
                    "time": "time",
                    "system": "system",
                    "code": "code",
                },
            },
            "index": {"type": "fixed", "date": "2023-07-02"},
            "features": [
                {"name": "age", "type": "age"},
                {
                    "name": "amb_count",
                    "events": "encounter",
                    "codes": [{"system": ACT, "code": "AMB"}],
                    "aggregation": "count",
                    "window": {"from": -365, "to": 0},
                },
            ],
            "label": {
                "name": "t2d",
                "events": "condition",
                "codes": [{"system": ICD10, "code": "E11", "match": "prefix"}],
                "window": {"from": -3650, "to": 0},
            },
        },
    }


def test_hand_computed_features_on_the_estonian_pack() -> None:
    m = extract_features(FeatureSpec.from_dict(spec_doc()), resources(), validate="full")
    assert m.patient_keys == ["ee-p1", "ee-p2", "ee-p3"]
    q = m.report.quality
    assert q.problems == 0 and q.fhir_versions == {"stream-0": "R5"}
    age = [float(v) for v in m.X[:, m.feature_names.index("age")]]
    assert age == pytest.approx([14782 / 365.2425, 12053 / 365.2425, 42.0], rel=1e-6)
    assert m.X[:, m.feature_names.index("amb_count")].tolist() == [2.0, 0.0, 0.0]
    assert m.y is not None and m.y.tolist() == [1.0, 1.0, 0.0]
    assert m.report.time_fallback_rows == 1  # ee-p2's recordedDate


def test_primitive_extensions_on_birth_date_are_readable() -> None:
    p1, p2, p3 = resources()[:3]
    acc = compile_expression(f"birthDate.extension('{ACCURACY}').value.ofType(Coding).code")
    assert acc.evaluate(p1) == ["AAA"] and acc.evaluate(p2) == ["UUA"]
    age = compile_expression(f"birthDate.extension('{PATIENT_AGE}').value.ofType(Age).value")
    assert age.evaluate(p3) == [42]
    partial = {**p2, "birthDate": "1990"}
    assert compile_expression("birthDate").evaluate(partial) == ["1990"]  # kept at its precision
    assert compile_expression("birthDate.lowBoundary()").evaluate(partial)[0].text == "1990-01-01"


def test_an_r4_path_on_the_r5_spec_is_a_compile_error() -> None:
    doc = spec_doc()
    doc["views"]["encounter"]["select"][0]["column"][1]["path"] = "period.start"
    with pytest.raises(FeatureSpecError, match="no element 'period' in FHIR R5"):
        FeatureSpec.from_dict(doc)
    doc = spec_doc()
    doc["views"]["encounter"]["select"][1]["forEach"] = "class"
    doc["views"]["encounter"]["select"][1]["column"] = [
        {"name": "system", "path": "system"},
        {"name": "code", "path": "code"},
    ]
    with pytest.raises(FeatureSpecError, match="CodeableConcept has no element 'system'"):
        FeatureSpec.from_dict(doc)


def test_a_view_declaring_its_release_is_checked_against_it() -> None:
    from fhir_adapters.errors import ViewDefinitionError
    from fhir_adapters.views import compile_view

    view = {
        "resource": "Encounter",
        "fhirVersion": ["5.0.0"],
        "select": [{"column": [{"name": "c", "path": "class.code"}]}],
    }
    with pytest.raises(ViewDefinitionError) as err:
        compile_view(view)
    assert err.value.code == "VIEW_PATH_NOT_IN_RELEASE"
    compile_view({**view, "fhirVersion": ["4.0.1"]})  # the same path is right in R4
    with pytest.raises(ViewDefinitionError) as err:
        compile_view({**view, "fhirVersion": ["banana"]})
    assert err.value.code == "VIEW_FHIR_VERSION"


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


R4_ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "r4",
    "status": "finished",
    "class": {"system": ACT, "code": "AMB"},
    "subject": {"reference": "Patient/x"},
    "period": {"start": "2020-01-01"},
}


def test_a_folder_with_an_r4_file_first_loses_no_valid_r5_resource(tmp_path: Path) -> None:
    _write(tmp_path / "a_r4.ndjson", [R4_ENCOUNTER])
    plain = [copy.deepcopy(r) for r in resources()]
    for r in plain:
        r.pop("meta", None)  # no profile: nothing in these resources names the release
    _write(tmp_path / "b_ee.ndjson", plain)
    stream = ResourceStream(tmp_path, validate="full")
    got = list(stream)
    assert len(got) == 1 + len(plain)
    assert stream.report.counts["invalid_resource"] == 0


def test_an_export_folder_is_read_with_the_release_its_state_file_recorded(tmp_path: Path) -> None:
    from fhir_adapters.sources.export_state import ExportState, save_state

    save_state(
        tmp_path, ExportState(base_url="http://127.0.0.1/fhir", request={}, fhir_version="5.0.0")
    )
    enc = _encounter("e9", "ee-p1", "AMB", "2023-01-01")
    del enc["class"], enc["actualPeriod"]  # nothing left that shows the release
    _write(tmp_path / "Encounter.ndjson", [enc])
    stream = ResourceStream(tmp_path, validate="full")
    assert len(list(stream)) == 1
    assert stream.versions == {tmp_path.name: "R5"}
    spec = FeatureSpec.from_dict(spec_doc())
    assert spec.fhir_version == "R5"


def test_without_a_stated_release_an_r4_path_on_r5_data_is_a_named_warning() -> None:
    doc = spec_doc()
    del doc["fhirVersion"]
    doc["views"]["encounter"]["select"][0]["column"][1]["path"] = "period.start"
    m = extract_features(FeatureSpec.from_dict(doc), resources())
    assert {"feature": "view:encounter:R5", "kind": "path_not_in_release"} in m.report.warnings
    assert m.summary()["report"]["warnings_by_kind"]["path_not_in_release"] == 1
    clean = extract_features(FeatureSpec.from_dict(spec_doc()), resources())
    assert not [w for w in clean.report.warnings if w["kind"] == "path_not_in_release"]
