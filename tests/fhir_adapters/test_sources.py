"""File sources and the resource stream: NDJSON, Bundles, R4/R5 detection, bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from fhir_adapters.bundle import iter_bundle
from fhir_adapters.errors import SourceError, ValidationModeError
from fhir_adapters.ndjson import iter_ndjson
from fhir_adapters.quality import QualityReport
from fhir_adapters.stream import ResourceStream, detect_version, normalize_version, open_stream
from tests.fhir_adapters.helpers import obs, patient


def _write_ndjson(path: Path, resources: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path


def test_ndjson_file_folder_and_gzip(tmp_path: Path) -> None:
    _write_ndjson(tmp_path / "Patient.ndjson", [patient("a"), patient("b")])
    with gzip.open(tmp_path / "Observation.ndjson.gz", "wb") as fh:
        fh.write(orjson.dumps(obs("o1", "a", "1-1", 1.0, "kg", "2019-01-01")) + b"\n")
    (tmp_path / "notes.txt").write_text("ignored")
    report = QualityReport()
    got = list(iter_ndjson(tmp_path, report))
    assert sorted(r["id"] for r in got) == ["a", "b", "o1"]
    assert report.problems == 0
    stream = open_stream(tmp_path)
    assert len(list(stream)) == 3
    assert stream.report.resources_by_type == {"Patient": 2, "Observation": 1}


def test_bad_lines_are_counted_by_kind_and_the_rest_processed(tmp_path: Path) -> None:
    lines = [
        orjson.dumps(patient("a")),
        b'{"resourceType": "Patient", "id": "cut", "gen',  # truncated
        b"this is not json",
        b"[1, 2, 3]",
        b"",
        orjson.dumps({"resourceType": "Spaceship", "id": "x"}),
        orjson.dumps({"id": "no-type"}),
        orjson.dumps(patient("b")),
    ]
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n" + b'{"resourceType": "Patient", "id": "c"')
    stream = open_stream(path)
    assert [r["id"] for r in stream] == ["a", "b"]
    kinds = stream.report.by_kind()
    assert kinds["truncated_line"] == 2  # the cut line in the middle and the unterminated last one
    assert kinds["invalid_json"] == 1
    assert kinds["not_an_object"] == 1
    assert kinds["unknown_resource_type"] == 2
    lines_seen = {q.line for q in stream.report.quarantine if q.line}
    assert {2, 3, 4} <= lines_seen
    # messages never quote the input
    assert all(
        "gen" not in q.message and "not json" not in q.message for q in stream.report.quarantine
    )


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        list(open_stream(tmp_path / "nope"))
    assert err.value.code == "FHIR_SOURCE"


def _transaction() -> dict:
    p = patient("p1")
    o = obs("o1", "ignored", "8480-6", 120, "mm[Hg]", "2019-05-01")
    o["subject"] = {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}
    o["encounter"] = {"reference": "urn:uuid:99999999-9999-9999-9999-999999999999"}  # dangling
    o["performer"] = [{"reference": "urn:uuid:22222222-2222-2222-2222-222222222222"}]
    practitioner = {"resourceType": "Practitioner"}  # no id: takes the URN's
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": p,
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:33333333-3333-3333-3333-333333333333",
                "resource": o,
                "request": {"method": "POST", "url": "Observation"},
            },
            {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222", "resource": practitioner},
        ],
    }


def test_bundle_urn_references_resolve_to_type_id_and_dangling_are_counted() -> None:
    from fhir_adapters.fhirpath import compile_expression

    report = QualityReport()
    got = list(iter_bundle(_transaction(), report))
    o = got[1]
    # the raw text stays; getReferenceKey resolves through the bundle's fullUrl table
    assert o["subject"]["reference"] == "urn:uuid:11111111-1111-1111-1111-111111111111"
    assert compile_expression("subject.getReferenceKey(Patient)").evaluate(o) == ["p1"]
    assert compile_expression("subject.reference").evaluate(o) == [o["subject"]["reference"]]
    assert compile_expression("performer.getReferenceKey(Practitioner)").evaluate(o) == [
        "22222222-2222-2222-2222-222222222222"
    ]
    assert compile_expression("subject.getReferenceKey(Group)").evaluate(o) == []
    assert got[2]["id"] == "22222222-2222-2222-2222-222222222222"
    assert o["encounter"]["reference"].startswith("urn:uuid:")
    assert report.counts["dangling_reference"] == 1
    entry = report.quarantine[0]
    assert (entry.kind, entry.resource_type, entry.resource_id, entry.path) == (
        "dangling_reference",
        "Observation",
        "o1",
        "Observation.encounter.reference",
    )


def test_searchset_and_collection_bundles(tmp_path: Path) -> None:
    searchset = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": "https://fhir.example.org/Patient/a",
                "resource": patient("a"),
                "search": {"mode": "match"},
            },
            {
                "fullUrl": "https://fhir.example.org/Observation/o",
                "resource": {
                    **obs("o", "x", "1-1", 1, "kg", "2020-01-01"),
                    "subject": {"reference": "https://fhir.example.org/Patient/a"},
                },
                "search": {"mode": "include"},
            },
            {
                "resource": {"resourceType": "OperationOutcome", "issue": []},
                "search": {"mode": "outcome"},
            },
        ],
    }
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient("b")}],
    }
    (tmp_path / "s.json").write_bytes(orjson.dumps(searchset))
    (tmp_path / "c.json").write_bytes(orjson.dumps(collection))
    (tmp_path / "broken.json").write_bytes(b'{"resourceType": "Bundle", "type": "coll')
    (tmp_path / "odd.json").write_bytes(
        orjson.dumps({"resourceType": "Bundle", "type": "scrapbook", "entry": []})
    )
    stream = open_stream(tmp_path)
    got = list(stream)
    assert sorted(r["id"] for r in got) == ["a", "b", "o"]
    o = next(r for r in got if r["id"] == "o")
    assert o["subject"]["reference"] == "https://fhir.example.org/Patient/a"  # as written
    from fhir_adapters.fhirpath import compile_expression

    assert compile_expression("subject.getReferenceKey(Patient)").evaluate(o) == ["a"]
    assert stream.report.counts["truncated_line"] == 1
    assert stream.report.counts["invalid_bundle"] == 1


def test_synthea_bundles_stream_with_resolved_references() -> None:
    from tests.conftest import shared_path

    folder = shared_path("synthea")
    stream = open_stream(folder)
    n = 0
    for r in stream:
        n += 1
        subject = r.get("subject")
        if isinstance(subject, dict) and subject["reference"].startswith("urn:"):
            assert subject["reference"] in r["_fullUrlKeys"], "URN without its resolution"
    assert n == stream.report.resources_read > 10_000
    assert stream.report.problems == 0
    assert stream.versions == {"synthea": "R4"}


# ---------------------------------------------------------------- versions

R5_ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "e5",
    "status": "completed",
    "class": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}]}
    ],
    "actualPeriod": {"start": "2024-01-01"},
}
R4_ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "e4",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "period": {"start": "2020-01-01"},
}


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (R4_ENCOUNTER, "R4"),
        (R5_ENCOUNTER, "R5"),
        ({"resourceType": "CapabilityStatement", "fhirVersion": "5.0.0"}, "R5"),
        ({"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"}, "R4"),
        (
            {
                "resourceType": "Patient",
                "meta": {"profile": ["https://fhir.ee/StructureDefinition/ee-patient"]},
            },
            "R5",
        ),
        (
            {
                "resourceType": "Patient",
                "meta": {
                    "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]
                },
            },
            "R4",
        ),
        ({"resourceType": "DeviceUsage", "id": "x"}, "R5"),
        ({"resourceType": "DeviceUseStatement", "id": "x"}, "R4"),
        ({"resourceType": "MedicationRequest", "medicationCodeableConcept": {}}, "R4"),
        ({"resourceType": "MedicationRequest", "medication": {"concept": {}}}, "R5"),
        ({"resourceType": "Patient", "id": "x"}, None),
    ],
)
def test_detect_version(resource: dict, expected: str | None) -> None:
    assert detect_version(resource) == expected


def test_version_is_detected_per_source_and_can_be_forced() -> None:
    r4 = [patient("a"), R4_ENCOUNTER]
    r5 = [patient("b"), R5_ENCOUNTER]
    unknown = [patient("c")]
    stream = ResourceStream([r4, r5, unknown])
    assert len(list(stream)) == 5
    assert stream.versions == {"stream-0": "R4", "stream-1": "R5", "stream-2": "R4"}  # default R4
    forced = ResourceStream([r4], fhir_version="5.0.0")
    list(forced)
    assert forced.versions == {"stream-0": "R5"}
    assert normalize_version("4.3.0") == "R4"
    with pytest.raises(ValidationModeError):
        normalize_version("3.0.2")


def test_sources_given_any_way() -> None:
    from fhir_adapters.optout import OptOutFilter, StaticOptOut, filter_stream

    people = [patient("a"), patient("b")]
    assert len(list(ResourceStream(people))) == 2  # a list of resources is one source
    assert len(list(ResourceStream(iter(people)))) == 2  # so is an iterator (not materialised)
    assert len(list(ResourceStream([people, [patient("c")]]))) == 3
    assert len(list(ResourceStream(patient("d")))) == 1
    # the opt-out stream filter drops the patient and everything about them
    f = OptOutFilter(StaticOptOut({"a"}))
    kept = list(
        filter_stream(
            [
                *people,
                obs("o1", "a", "1-1", 1, "kg", "2020-01-01"),
                obs("o2", "b", "1-1", 1, "kg", "2020-01-01"),
            ],
            f,
        )
    )
    assert [r["id"] for r in kept] == ["b", "o2"]
    assert f.excluded == 1


def test_ndjson_streams_with_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "big.ndjson"
    line = orjson.dumps(
        {**patient("x"), "text": {"status": "generated", "div": "<div>" + "y" * 400 + "</div>"}}
    )
    path.write_bytes(
        b"".join(line.replace(b'"x"', f'"p{i}"'.encode()) + b"\n" for i in range(20_000))
    )
    list(open_stream(path))  # warm caches (resource type table, imports)
    tracemalloc.start()
    n = sum(1 for _ in open_stream(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 20_000
    assert peak < path.stat().st_size / 10, (
        peak,
        path.stat().st_size,
    )  # ~5 % here: buffers, not the file


def test_bom_and_crlf_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "win.ndjson"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + orjson.dumps(patient("a"))
        + b"\r\n"
        + orjson.dumps(patient("b"))
        + b"\r\n"
    )
    stream = open_stream(path)
    assert [r["id"] for r in stream] == ["a", "b"]
    assert stream.report.problems == 0
