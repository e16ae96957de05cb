"""Validation modes full | sample | off, per FHIR release, with quarantine details."""

from __future__ import annotations

import pytest

from fhir_adapters.errors import ValidationModeError
from fhir_adapters.quality import QualityReport
from fhir_adapters.stream import ResourceStream
from fhir_adapters.validation import Validator, in_sample, validation_errors
from tests.fhir_adapters.helpers import obs, patient
from tests.fhir_adapters.test_sources import R4_ENCOUNTER, R5_ENCOUNTER

BAD_PATIENT = {
    "resourceType": "Patient",
    "id": "bad",
    "birthDate": "2020-13-45",
    "gender": "female",
}


def test_full_validation_quarantines_with_type_id_path_message() -> None:
    stream = ResourceStream(
        [[patient("a"), BAD_PATIENT, obs("o", "a", "1-1", 1, "kg", "2020-01-01")]], validate="full"
    )
    assert [r["id"] for r in stream] == ["a", "o"]
    report = stream.report
    assert report.counts["invalid_resource"] == 1 and report.validated == 3
    q = report.quarantine[0]
    assert (q.kind, q.resource_type, q.resource_id, q.path) == (
        "invalid_resource",
        "Patient",
        "bad",
        "Patient.birthDate",
    )
    assert q.message and "2020-13-45" not in q.message  # never echoes the value


def test_off_is_a_real_fast_path() -> None:
    stream = ResourceStream([[BAD_PATIENT]], validate="off")
    assert len(list(stream)) == 1
    assert stream.report.validated == 0


def test_sample_is_deterministic_and_partial() -> None:
    resources = [patient(f"p{i}") for i in range(2000)]
    picked = [r["id"] for r in resources if in_sample(r, 0.05)]
    assert 40 < len(picked) < 170
    assert picked == [r["id"] for r in resources if in_sample(r, 0.05)]
    stream = ResourceStream([resources], validate="sample", sample_rate=0.05)
    assert len(list(stream)) == 2000
    assert stream.report.validated == len(picked)


def test_release_picks_the_models() -> None:
    # R5 Encounter.class is a list: valid in R5, invalid in R4 (and vice versa)
    assert validation_errors(R5_ENCOUNTER, "R5") == []
    assert validation_errors(R5_ENCOUNTER, "R4")
    assert validation_errors(R4_ENCOUNTER, "R4") == []
    assert validation_errors(R4_ENCOUNTER, "R5")
    # a per-source detected R5 stream validates with R5 models: nothing quarantined
    stream = ResourceStream([[R5_ENCOUNTER], [R4_ENCOUNTER]], validate="full")
    assert len(list(stream)) == 2
    assert stream.report.problems == 0


def test_bad_mode() -> None:
    with pytest.raises(ValidationModeError) as err:
        Validator("strict", QualityReport())
    assert err.value.code == "FHIR_VALIDATION_MODE"
