"""One opt-out reader: id lines, ``Patient/<id>`` lines, comments, Consent files; unknown lines fail.

The CLI used to exclude nobody for ``Patient/<id>`` lines, Consent NDJSON and
``id # comment`` lines; here the same files go through ``ehds features
--opt-out`` and must exclude the patient, and an unreadable line is an error
with a code, never a silent "excluded 0".
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_adapters.optout_file import OptOutFileError, parse_opt_out_lines, read_opt_out
from gateway.cli import main
from permits.optout import ConsentOptOutRegistry
from tests.fhir_adapters.helpers import LOINC, obs, patient, spec_doc


def test_lines_of_every_accepted_shape() -> None:
    lines = [
        "\ufeffa1",
        "Patient/b2",
        "c3   # asked by phone",
        "# a comment line",
        "",
        "https://fhir.example.org/r4/Patient/d4/_history/2",
    ]
    assert parse_opt_out_lines(lines) == ["a1", "b2", "c3", "d4"]


@pytest.mark.parametrize("line", ["Observation/1", "two words", "Patient/", '{"id": 1}'])
def test_an_unknown_line_is_an_error_naming_only_its_number(line: str) -> None:
    with pytest.raises(OptOutFileError, match="line 2") as info:
        parse_opt_out_lines(["ok", line])
    assert line not in str(info.value) or line == "Patient/"
    assert info.value.code == "OPTOUT_FILE_INVALID"


def _consent(pid: str) -> dict[str, object]:
    return {
        "resourceType": "Consent",
        "id": f"c-{pid}",
        "status": "active",
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}
            ]
        },
        "patient": {"reference": f"Patient/{pid}"},
        "provision": {"type": "deny"},
    }


def test_consent_ndjson_goes_through_the_consent_policy(tmp_path: Path) -> None:
    f = tmp_path / "optout.ndjson"
    f.write_bytes(orjson.dumps(_consent("p1")) + b"\n")
    reg = read_opt_out(f, ConsentOptOutRegistry.from_resources)
    assert reg.is_opted_out("p1") and not reg.is_opted_out("p2")


def test_a_consent_file_with_other_resources_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "optout.ndjson"
    other = obs("o1", "p2", "4548-4", 1.0, "%", "2020-01-01")
    f.write_bytes(orjson.dumps(_consent("p1")) + b"\n" + orjson.dumps(other) + b"\n")
    with pytest.raises(OptOutFileError, match="not Consent"):
        read_opt_out(f, ConsentOptOutRegistry.from_resources)


@pytest.mark.parametrize("kind", ["patient_ref", "comment", "consent"])
def test_the_cli_excludes_what_the_file_names(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    feats = [
        {
            "name": "a1c",
            "events": "observation",
            "codes": [{"system": LOINC, "code": "4548-4"}],
            "aggregation": "count",
        }
    ]
    spec.write_bytes(orjson.dumps(spec_doc(feats)))
    data = tmp_path / "data.ndjson"
    rows = [patient("p1"), patient("p2"), obs("o1", "p1", "4548-4", 6.0, "%", "2019-01-01")]
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    if kind == "consent":
        optout = tmp_path / "optout.ndjson"
        optout.write_bytes(orjson.dumps(_consent("p1")) + b"\n")
    else:
        optout = tmp_path / "optout.txt"
        optout.write_text("Patient/p1\n" if kind == "patient_ref" else "p1  # withdrew 2024\n")
    rc = main(
        ["features", "--spec", str(spec), "--source", str(data), "--opt-out", str(optout), "--json"]
    )
    assert rc == 0
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["excluded_opt_out"] == 1 and summary["rows"] == 1


def test_the_cli_refuses_an_unreadable_opt_out_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_bytes(orjson.dumps(spec_doc([{"name": "age", "type": "age"}])))
    data = tmp_path / "data.ndjson"
    data.write_bytes(orjson.dumps(patient("p1")) + b"\n")
    optout = tmp_path / "optout.txt"
    optout.write_text("p1\nEncounter/e1\n")
    assert (
        main(["features", "--spec", str(spec), "--source", str(data), "--opt-out", str(optout)])
        == 2
    )
    err = capsys.readouterr().err
    assert "[OPTOUT_FILE_INVALID]" in err and "line 2" in err and len(err.strip().splitlines()) == 1


def test_the_flower_site_reads_the_same_file(tmp_path: Path) -> None:
    from federation.adapters import FhirSource

    feats = [{"name": "age", "type": "age"}]
    label = {
        "name": "t2d",
        "events": "condition",
        "codes": [{"system": "http://snomed.info/sct", "code": "44054006"}],
    }
    doc = spec_doc(feats, label=label)
    data = tmp_path / "data.ndjson"
    data.write_bytes(b"".join(orjson.dumps(patient(p)) + b"\n" for p in ("p1", "p2", "p3")))
    optout = tmp_path / "optout.txt"
    optout.write_text("Patient/p1  # withdrew\n")
    from fhir_adapters.features import FeatureSpec

    spec_hash = FeatureSpec.from_dict(doc).canonical_hash()
    dataset = FhirSource(str(data), str(optout)).load(doc, spec_hash=spec_hash)
    assert dataset.excluded_opt_out == 1 and dataset.rows == 2


def test_a_consent_bundle_with_urn_patient_references_is_resolved(tmp_path: Path) -> None:
    pid = "urn:uuid:11111111-1111-1111-1111-111111111111"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": pid, "resource": patient("p9")},
            {"fullUrl": "urn:uuid:2", "resource": {**_consent("x"), "patient": {"reference": pid}}},
        ],
    }
    f = tmp_path / "consents.json"
    f.write_bytes(orjson.dumps(bundle))
    reg = read_opt_out(f, ConsentOptOutRegistry.from_resources)
    assert reg.is_opted_out("p9")
