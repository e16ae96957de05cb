"""A Bulk Data export folder read as a source: error/ and deleted/ are not data."""

from __future__ import annotations

from pathlib import Path

import orjson

from fhir_adapters.quality import QualityReport
from fhir_adapters.stream import iter_path


def test_error_and_deleted_folders_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "error").mkdir()
    (tmp_path / "deleted").mkdir()
    patient = {"resourceType": "Patient", "id": "p1"}
    (tmp_path / "Patient.ndjson").write_bytes(orjson.dumps(patient) + b"\n")
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}
    (tmp_path / "error" / "OperationOutcome.ndjson").write_bytes(orjson.dumps(outcome) + b"\n")
    deleted = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    (tmp_path / "deleted" / "Bundle.ndjson").write_bytes(orjson.dumps(deleted) + b"\n")
    got = list(iter_path(tmp_path, QualityReport()))
    assert [r["resourceType"] for r in got] == ["Patient"]
