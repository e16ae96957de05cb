"""One reader for every path a Bundle or NDJSON enters, and quarantine records that say where.

Minimal resources: a transaction Bundle with ``urn:uuid`` references read
from memory (a view, ``open_stream``), from an NDJSON line, from ``.json.gz``
and a BOM-prefixed ``.json``; a Bulk ``manifest.json``; invalid resources at a
known line and entry; an invalid Patient whose Observations must not be
reported as "not in the stream".
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from fhir_adapters.features import FeatureSpec, extract_features
from fhir_adapters.stream import ResourceStream, open_stream
from fhir_adapters.views import compile_view
from tests.fhir_adapters.helpers import LOINC, obs, patient, spec_doc

PID = "urn:uuid:11111111-1111-1111-1111-111111111111"


def _bundle() -> dict[str, Any]:
    o = obs("o1", "x", "4548-4", 6.1, "%", "2019-05-01")
    o["subject"] = {"reference": PID}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": PID,
                "resource": patient("p1"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:2",
                "resource": o,
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Observation",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "raw", "path": "subject.reference"},
            ]
        }
    ],
}
WANT = [{"id": "o1", "patient": "p1", "raw": PID}]


def test_a_view_given_a_bundle_reads_its_entries_and_keeps_the_raw_reference() -> None:
    assert list(compile_view(VIEW).rows([_bundle()])) == WANT


def test_open_stream_given_a_bundle_dict_reads_its_entries() -> None:
    stream = open_stream(_bundle())
    got = list(stream)
    assert [r["resourceType"] for r in got] == ["Patient", "Observation"]
    assert list(compile_view(VIEW).rows(got)) == WANT
    assert stream.report.resources_by_type == {"Patient": 1, "Observation": 1}


def test_bundles_from_ndjson_lines_gzip_and_bom_files(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_bytes(orjson.dumps(_bundle()) + b"\n")
    with gzip.open(tmp_path / "b.json.gz", "wb") as fh:
        fh.write(orjson.dumps(_bundle()))
    (tmp_path / "c.json").write_bytes(b"\xef\xbb\xbf" + orjson.dumps(_bundle()))
    stream = open_stream(tmp_path)
    rows = list(compile_view(VIEW).rows(stream))
    assert rows == WANT * 3
    assert stream.report.problems == 0


def test_a_bulk_manifest_is_skipped_and_counted_not_an_unknown_resource(tmp_path: Path) -> None:
    manifest = {"transactionTime": "2024-01-01T00:00:00Z", "request": "x", "output": []}
    (tmp_path / "manifest.json").write_bytes(orjson.dumps(manifest))
    (tmp_path / "Patient.ndjson").write_bytes(orjson.dumps(patient("p1")) + b"\n")
    stream = open_stream(tmp_path)
    assert len(list(stream)) == 1
    assert stream.report.counts["unknown_resource_type"] == 0
    assert stream.report.summary()["files_skipped"] == {"bulk_manifest": 1}


def test_a_json_file_without_resource_type_is_named_in_its_quarantine_record(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.json").write_bytes(b'{"hello": 1}')
    stream = open_stream(tmp_path)
    assert list(stream) == []
    entry = stream.report.quarantine[0]
    assert (entry.kind, entry.source) == ("unknown_resource_type", "notes.json")
    assert "notes.json" in entry.message


BAD_OBS = {
    "resourceType": "Observation",
    "id": "bad",
    "status": "final",
    "code": {"text": "x"},
    "effectiveDateTime": "yesterday",
}


def test_quarantine_records_name_file_line_entry_type_id_and_message(tmp_path: Path) -> None:
    lines = [patient("p1"), patient("p2"), BAD_OBS]
    (tmp_path / "a.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    bundle = _bundle()
    bundle["entry"].append({"fullUrl": "urn:uuid:3", "resource": {**BAD_OBS, "id": "bad2"}})
    (tmp_path / "b.json").write_bytes(orjson.dumps(bundle))
    stream = ResourceStream(tmp_path, validate="full")
    list(stream)
    recs = {q.resource_id: q for q in stream.report.quarantine if q.kind == "invalid_resource"}
    a, b = recs["bad"], recs["bad2"]
    assert (a.source, a.line, a.entry, a.resource_type) == ("a.ndjson", 3, None, "Observation")
    assert (b.source, b.line, b.entry, b.resource_type) == ("b.json", None, 2, "Observation")
    assert "effectiveDateTime" in a.path and a.message
    assert stream.report.summary()["quarantined_by_type"] == {"Observation": 2}


def test_an_invalid_patient_is_not_reported_as_missing_from_the_stream() -> None:
    bad_patient = {**patient("p2"), "birthDate": "not a date"}
    feats = [
        {
            "name": "n",
            "events": "observation",
            "codes": [{"system": LOINC, "code": "4548-4"}],
            "aggregation": "count",
        }
    ]
    stream = [
        patient("p1"),
        bad_patient,
        obs("o1", "p2", "4548-4", 6.0, "%", "2019-01-01"),
        obs("o2", "p2", "4548-4", 6.5, "%", "2019-02-01"),
    ]
    m = extract_features(FeatureSpec.from_dict(spec_doc(feats)), stream, validate="full")
    q = m.report.quality
    assert q.counts["invalid_resource"] == 1
    assert q.counts["dangling_reference"] == 0
    assert m.report.rows_of_quarantined_patients == 2
    assert m.patient_keys == ["p1"]


def test_the_export_folder_reader_uses_the_same_reader(tmp_path: Path) -> None:
    from fhir_adapters.sources import read_export_dir
    from fhir_adapters.sources.bulk_export import ReadStats

    with gzip.open(tmp_path / "Patient.ndjson.gz", "wb") as fh:
        fh.write(
            b"\xef\xbb\xbf" + orjson.dumps(patient("p1")) + b"\n" + orjson.dumps(patient("p2"))
        )
    (tmp_path / "Observation.ndjson").write_bytes(
        b'{"resourceType": "Obs\n' + orjson.dumps(BAD_OBS) + b"\n"
    )
    stats = ReadStats()
    got = [r["id"] for r in read_export_dir(tmp_path, stats=stats)]
    assert sorted(got) == ["bad", "p1", "p2"]  # gzip and BOM read; the cut line counted
    assert (stats.files, stats.resources, stats.bad_lines) == (2, 3, 1)
