"""docs/examples/diabetes.spec.json on the real Synthea R4 bundles, checked by hand.

The expected values were read from the bundle JSON files directly (not from
our code): e.g. Chad_Pfeffer_1c911236...json has its last Observation on
2018-06-21T17:45:30-04:00 (the index date), BMI 24.77 and HbA1c 6.01 % that
day, the BP panel's systolic component 109 mm[Hg], birthDate 1996-04-18,
male, and a Prediabetes (15777000) Condition.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest

from fhir_adapters.features import FeatureMatrix, FeatureSpec, extract_features
from fhir_adapters.optout import StaticOptOut
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[2]


def _age(birth: str, index: str) -> float:
    """Years from birth to the index *day*: the local calendar date of the last event."""
    b = datetime.fromisoformat(birth).date()
    i = datetime.fromisoformat(index).date()
    return (i - b).days / 365.2425


# patient id -> (bmi, hba1c, systolic, age, female, male, label)
HAND_CHECKED = {
    "1c911236-e7da-42a6-a3bd-3a3b4e55d5cd": (
        24.77, 6.01, 109, _age("1996-04-18", "2018-06-21T17:45:30-04:00"), 0, 1, 1),
    "0b8a6ef0-07c8-48ca-804d-1e64f6e44b95": (
        30.21, math.nan, 123, _age("1967-10-24", "2019-06-25T21:36:15-04:00"), 1, 0, 0),
    "0dc5a831-6ccd-4510-80bf-19bb3ce69724": (
        30.01, math.nan, 130, _age("1963-09-25", "2019-06-19T04:29:20-04:00"), 0, 1, 0),
}  # fmt: skip


@pytest.fixture(scope="module")
def matrix() -> FeatureMatrix:
    folder = shared_path("synthea")
    spec = FeatureSpec.from_file(ROOT / "docs/examples/diabetes.spec.json")
    return extract_features(spec, folder)


def test_hand_checked_patients(matrix: FeatureMatrix) -> None:
    assert matrix.feature_names == ["bmi", "hba1c", "systolic_bp", "age", "sex=female", "sex=male"]
    assert matrix.y is not None
    for key, (*expected, label) in HAND_CHECKED.items():
        row = matrix.patient_keys.index(key)
        for name, want, got in zip(matrix.feature_names, expected, matrix.X[row], strict=True):
            if math.isnan(want):
                assert math.isnan(got), (key, name)
            else:
                assert float(got) == pytest.approx(want, rel=1e-5), (key, name)
        assert matrix.y[row] == label


def test_cohort_summary(matrix: FeatureMatrix) -> None:
    s = matrix.summary()
    assert s["rows"] == 40
    assert s["label_positive"] == 15  # 15 Prediabetes conditions, no diabetes in this sample
    assert s["per_feature"]["systolic_bp"]["count"] == 40
    assert s["per_feature"]["bmi"]["count"] == 38  # two infants without a BMI in the window
    assert s["per_feature"]["hba1c"]["count"] == 15
    assert s["quarantined"] == 0
    assert s["report"]["quality"]["fhir_versions"] == ["R4"]
    assert s["report"]["rows_by_view"]["patient"] == 40


def test_opt_out_on_synthea() -> None:
    spec = FeatureSpec.from_file(ROOT / "docs/examples/diabetes.spec.json")
    key = next(iter(HAND_CHECKED))
    m = extract_features(spec, shared_path("synthea"), opt_out=StaticOptOut({key}))
    assert m.n_rows == 39 and key not in m.patient_keys
    assert m.report.excluded_opt_out == 1
    assert m.summary()["label_positive"] == 14
