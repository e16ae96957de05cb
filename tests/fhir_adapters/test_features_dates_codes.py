"""Feature windows on real-world date shapes, code hierarchies and medication references.

Each test is one or two minimal resources with a hand-computed answer:
the index day itself is inside ``to: 0``; a local date is the date written;
undated rows are counted; ``match: prefix`` takes ICD-10 children; a
MedicationRequest naming its drug by reference is matched through the
Medication's code; and the matrix warnings name columns that cannot be right.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from fhir_adapters.errors import FeatureSpecError
from fhir_adapters.features import FeatureSpec, extract_features
from tests.fhir_adapters.helpers import LOINC, SNOMED, condition, obs, patient, spec_doc

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ATC = "http://www.whocc.no/atc"
HBA1C = [{"system": LOINC, "code": "4548-4"}]


def _hba1c(window: dict[str, Any], **recipe: Any) -> FeatureSpec:
    feats = [
        {
            "name": "a1c",
            "events": "observation",
            "codes": HBA1C,
            "aggregation": "latest",
            "window": window,
        }
    ]
    return FeatureSpec.from_dict(spec_doc(feats, **recipe))


def test_an_event_later_on_the_index_day_is_inside_to_0() -> None:
    # index 2020-01-01 (fixed, 00:00); HbA1c at 09:00 that day: day 0 of the window
    stream = [patient("p1"), obs("o1", "p1", "4548-4", 6.1, "%", "2020-01-01T09:00:00Z")]
    m = extract_features(_hba1c({"from": -30, "to": 0}), stream)
    assert m.X[0, 0] == pytest.approx(6.1)


def test_the_day_after_the_index_day_is_outside_to_0() -> None:
    stream = [patient("p1"), obs("o1", "p1", "4548-4", 6.1, "%", "2020-01-02T00:30:00Z")]
    m = extract_features(_hba1c({"from": -30, "to": 0}), stream)
    assert math.isnan(m.X[0, 0])


def _onset_spec(**recipe: Any) -> FeatureSpec:
    feats = [
        {
            "name": "dx",
            "events": "condition",
            "codes": [{"system": SNOMED, "code": "44054006"}],
            "aggregation": "count",
            "window": {"from": 0, "to": 10},
        }
    ]
    return FeatureSpec.from_dict(
        spec_doc(feats, index={"type": "fixed", "date": "2023-07-02"}, **recipe)
    )


def test_windows_use_the_local_date_written_in_the_data() -> None:
    # 01:00 in Tallinn on 2 July is 22:00 UTC on 1 July: the site's date is 2 July
    stream = [patient("p1"), condition("c1", "p1", "44054006", "2023-07-02T01:00:00+03:00")]
    assert extract_features(_onset_spec(), stream).X[0, 0] == 1.0


def test_windows_in_utc_when_the_spec_says_so() -> None:
    stream = [patient("p1"), condition("c1", "p1", "44054006", "2023-07-02T01:00:00+03:00")]
    assert extract_features(_onset_spec(windowDates="utc"), stream).X[0, 0] == 0.0


def test_window_dates_must_be_local_or_utc() -> None:
    with pytest.raises(FeatureSpecError):
        _onset_spec(windowDates="Europe/Tallinn")


def _cond(cid: str, **fields: Any) -> dict[str, Any]:
    c = condition(cid, "p1", "44054006", "x")
    del c["onsetDateTime"]
    c.update(fields)
    return c


def test_conditions_without_onset_datetime_take_period_start_or_recorded_date() -> None:
    stream = [
        patient("p1"),
        _cond("period", onsetPeriod={"start": "2023-07-03"}),
        _cond("recorded", onsetAge={"value": 40, "unit": "a"}, recordedDate="2023-07-05"),
        _cond("undated", onsetString="in childhood"),
    ]
    m = extract_features(_onset_spec(), stream)
    assert m.X[0, 0] == 2.0  # period start and recordedDate are inside [0, 10]
    assert m.report.time_fallback_rows == 2
    q = m.report.quality
    assert q.counts["no_event_time"] == 1  # the third is counted, not silently dropped
    assert "1 row(s) without a date" in q.quarantine[-1].message


def test_prefix_match_takes_icd10_children_and_exact_does_not() -> None:
    def spec(match: str) -> FeatureSpec:
        feats = [
            {
                "name": "t2d",
                "events": "condition",
                "codes": [{"system": ICD10, "code": "E11", "match": match}],
                "aggregation": "count",
                "window": {"from": None, "to": 0},
            }
        ]
        return FeatureSpec.from_dict(spec_doc(feats))

    def stream() -> list[dict[str, Any]]:
        out = [patient("p1")]
        for i, code in enumerate(("E11", "E11.9", "E11.65", "E10.9", "E1")):
            c = condition(f"c{i}", "p1", code, "2019-05-01")
            c["code"]["coding"][0]["system"] = ICD10
            out.append(c)
        return out

    assert extract_features(spec("prefix"), stream()).X[0, 0] == 3.0
    assert extract_features(spec("exact"), stream()).X[0, 0] == 1.0
    with pytest.raises(FeatureSpecError):
        spec("descendants")


MED_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "MedicationRequest",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "time", "path": "authoredOn"},
            ]
        },
        {
            "forEachOrNull": "medication.ofType(CodeableConcept).coding",
            "column": [{"name": "system", "path": "system"}, {"name": "code", "path": "code"}],
        },
    ],
}


def _med_spec() -> FeatureSpec:
    doc = spec_doc(
        [
            {
                "name": "metformin",
                "events": "meds",
                "codes": [{"system": ATC, "code": "A10BA02"}],
                "aggregation": "count",
                "window": {"from": None, "to": 0},
            }
        ]
    )
    doc["views"]["meds"] = copy.deepcopy(MED_VIEW)
    doc["recipe"]["events"]["meds"] = {
        "view": "meds",
        "patient": "patient",
        "time": "time",
        "system": "system",
        "code": "code",
    }
    return FeatureSpec.from_dict(doc)


def _request(rid: str, ref: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2019-03-01",
        "medicationReference": {"reference": ref},
    }


def test_medication_references_are_followed_to_the_medication_code() -> None:
    med = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {"coding": [{"system": ATC, "code": "A10BA02"}]},
    }
    contained = _request("r3", "#inline")
    contained["contained"] = [{**med, "id": "inline"}]
    stream = [
        patient("p1"),
        _request("r1", "Medication/m1"),  # before its Medication: resolved after the pass
        med,
        _request("r2", "Medication/missing"),
        contained,
    ]
    m = extract_features(_med_spec(), stream)
    assert m.X[0, 0] == 2.0
    assert m.report.medication_rows_resolved == 2
    assert m.report.quality.counts["dangling_reference"] == 1


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ({"codes": [{"system": "http://loinc.og", "code": "4548-4"}]}, "unknown code system"),
        ({"unit": "mg/dl"}, "write 'mg/dL'"),
        ({"unit": "banana"}, "not a UCUM unit"),
    ],
)
def test_spec_loading_refuses_systems_and_units_that_match_nothing(
    feature: dict[str, Any], message: str
) -> None:
    base = {"name": "f", "events": "observation", "codes": HBA1C, "aggregation": "latest"}
    with pytest.raises(FeatureSpecError, match=message):
        FeatureSpec.from_dict(spec_doc([{**base, **feature}]))


def test_an_empty_concept_map_is_refused() -> None:
    empty = {
        "resourceType": "ConceptMap",
        "status": "active",
        "group": [{"source": "http://lab.example.org/codes", "target": LOINC, "element": []}],
    }
    base = {"name": "f", "events": "observation", "codes": HBA1C, "aggregation": "count"}
    with pytest.raises(FeatureSpecError, match="empty ConceptMap"):
        FeatureSpec.from_dict(spec_doc([base], conceptMaps=[empty]))


@pytest.mark.parametrize("version", ["R6", "banana", "6.0.0"])
def test_a_spec_fhir_version_must_be_a_real_release(version: str) -> None:
    doc = spec_doc([{"name": "age", "type": "age"}])
    doc["fhirVersion"] = version
    with pytest.raises(FeatureSpecError, match="fhirVersion"):
        FeatureSpec.from_dict(doc)


def test_matrix_warnings_name_all_missing_constant_and_label_equal_columns() -> None:
    dm = [{"system": SNOMED, "code": "44054006"}]
    feats = [
        {
            "name": "typo",
            "events": "observation",
            "codes": [{"system": LOINC, "code": "4548-5"}],
            "aggregation": "latest",
        },
        {"name": "any_obs", "events": "observation", "codes": HBA1C, "aggregation": "exists"},
        {
            "name": "leak",
            "events": "condition",
            "codes": dm,
            "aggregation": "exists",
            "window": {"from": None, "to": None},
        },
    ]
    label = {"name": "t2d", "events": "condition", "codes": dm}
    spec = FeatureSpec.from_dict(spec_doc(feats, label=label))
    stream = [
        patient("p1"),
        patient("p2"),
        obs("o1", "p1", "4548-4", 6.0, "%", "2019-01-01"),
        obs("o2", "p2", "4548-4", 7.0, "%", "2019-01-01"),
        condition("c1", "p1", "44054006", "2019-01-01"),
    ]
    m = extract_features(spec, stream)
    kinds = {w["feature"]: w["kind"] for w in m.report.warnings}
    assert kinds == {"typo": "all_missing", "any_obs": "constant", "leak": "equals_label"}
    summary = m.summary()["report"]
    assert summary["warnings_by_kind"] == {
        "all_missing": 1,
        "constant": 1,
        "equals_label": 1,
        "path_not_in_release": 0,
    }
