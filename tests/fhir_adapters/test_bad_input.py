"""Acceptance: each kind of bad input is counted and reported; everything else is processed."""

from __future__ import annotations

from pathlib import Path

import orjson

from fhir_adapters.features import FeatureSpec, extract_features
from fhir_adapters.stream import ResourceStream
from tests.fhir_adapters.helpers import obs, patient, spec_doc

GLU = [{"system": "http://loinc.org", "code": "2339-0"}]


def test_every_kind_counted_and_the_rest_processed(tmp_path: Path) -> None:
    good = [patient(f"p{i}") for i in range(5)] + [
        obs(f"g{i}", f"p{i}", "2339-0", 90 + i, "mg/dL", "2019-06-01") for i in range(5)
    ]
    bad_lines = [
        b'{"resourceType": "Observation", "id": "cut", "status": "fin',  # truncated line
        b"<html>502 Bad Gateway</html>",  # non-JSON line
        orjson.dumps({"resourceType": "Starship", "id": "ncc-1701"}),  # unknown resourceType
        orjson.dumps({"resourceType": "Patient", "id": "bad", "birthDate": "19-19-19"}),  # invalid
        orjson.dumps(obs("u", "p0", "2339-0", 5, "parsecs", "2019-07-01")),  # unknown unit
        orjson.dumps(obs("d", "nobody", "2339-0", 5, "mg/dL", "2019-07-01")),  # dangling
    ]
    lines = [orjson.dumps(r) for r in good]
    lines[3:3] = bad_lines
    (tmp_path / "export.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000000",
                "resource": {**obs("b", "x", "2339-0", 1, "mg/dL", "2019-01-01"), "subject": {"reference": "urn:uuid:ffffffff-0000-0000-0000-000000000000"}},
            }
        ],
    }  # fmt: skip
    (tmp_path / "bundle.json").write_bytes(orjson.dumps(bundle))  # dangling urn: reference

    spec = FeatureSpec.from_dict(spec_doc([{"name": "glucose", "events": "observation", "codes": GLU, "aggregation": "latest", "unit": "mg/dL"}]))  # fmt: skip
    stream = ResourceStream([tmp_path], validate="full")
    m = extract_features(spec, stream)
    kinds = m.report.quality.by_kind()
    assert kinds["truncated_line"] == 1
    assert kinds["invalid_json"] == 1
    assert kinds["unknown_resource_type"] == 1
    assert kinds["invalid_resource"] == 1
    assert kinds["unknown_unit"] == 1
    assert kinds["dangling_reference"] == 2  # the URN in the bundle, the Observation of "nobody"
    # everything else processed
    assert m.patient_keys == [f"p{i}" for i in range(5)]
    assert [float(v) for v in m.X[:, 0]] == [90.0, 91.0, 92.0, 93.0, 94.0]
    summary = m.summary()
    assert summary["quarantined"] == sum(kinds.values()) == 7
    assert "ncc-1701" not in orjson.dumps(summary).decode()
