"""``ehds view run``: ViewDefinitions over files, Bundles and a FHIR server, one table per view.

Minimal inputs with hand-written expected tables: a transaction Bundle with
``urn:uuid`` references (the raw reference column keeps the URN, the key
column resolves it), an NDJSON file with a bad line (counted, the rest kept),
a FHIR base URL served by the loopback test server, and the refusals
(parquet without pyarrow, an R4 path in a view declaring R5).
"""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapters.testing.fhir_test_server import FhirTestServer, ServerConfig
from gateway.cli import main
from tests.fhir_adapters.helpers import obs, patient

PID = "urn:uuid:11111111-1111-1111-1111-111111111111"
OBS_VIEW = {
    "resourceType": "ViewDefinition",
    "name": "obs",
    "resource": "Observation",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "ref", "path": "subject.reference"},
                {"name": "value", "path": "value.ofType(Quantity).value"},
            ]
        }
    ],
}
PATIENT_VIEW = {
    "resourceType": "ViewDefinition",
    "name": "patients",
    "resource": "Patient",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "gender", "path": "gender"},
            ]
        }
    ],
}


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    o = obs("o1", "x", "4548-4", 6.1, "%", "2019-05-01")
    o["subject"] = {"reference": PID}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": PID, "resource": patient("p1", gender="female")},
            {"fullUrl": "urn:uuid:2", "resource": o},
        ],
    }
    data = tmp_path / "data"
    data.mkdir()
    (data / "bundle.json").write_bytes(orjson.dumps(bundle))
    lines = [
        orjson.dumps(patient("p2", gender="male")),
        b'{"resourceType": "Pat',
        orjson.dumps(obs("o2", "p2", "4548-4", 7.5, "%", "2020-01-01")),
    ]
    (data / "more.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    v1, v2 = tmp_path / "obs.json", tmp_path / "patients.json"
    v1.write_bytes(orjson.dumps(OBS_VIEW))
    v2.write_bytes(orjson.dumps(PATIENT_VIEW))
    return data, v1, v2


def test_csv_tables_from_bundles_and_ndjson(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, v1, v2 = _files(tmp_path)
    out = tmp_path / "out"
    rc = main(
        [
            "view",
            "run",
            str(v1),
            str(v2),
            "--input",
            str(data),
            "--out",
            str(out),
            "--format",
            "csv",
        ]
    )
    assert rc == 0
    with (out / "obs.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["id", "patient", "ref", "value"],
        ["o1", "p1", PID, "6.1"],
        ["o2", "p2", "Patient/p2", "7.5"],
    ]
    with (out / "patients.csv").open() as fh:
        assert list(csv.reader(fh)) == [["id", "gender"], ["p1", "female"], ["p2", "male"]]
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert (
        line.startswith("view run: 4 resources -> obs 2, patients 2 rows") and "problems 1" in line
    )
    assert not list(out.glob("*.part"))


def test_ndjson_tables_and_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, v1, _ = _files(tmp_path)
    out = tmp_path / "out"
    assert (
        main(
            [
                "view",
                "run",
                str(v1),
                "--input",
                str(data),
                "--out",
                str(out),
                "--format",
                "ndjson",
                "--json",
            ]
        )
        == 0
    )
    rows = [orjson.loads(x) for x in (out / "obs.ndjson").read_bytes().splitlines()]
    assert rows[0] == {"id": "o1", "patient": "p1", "ref": PID, "value": 6.1}
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == {"obs": 2} and summary["problems_by_kind"] == {"truncated_line": 1}


def test_parquet_without_pyarrow_is_refused_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        data, v1, _ = _files(tmp_path)
        rc = main(
            [
                "view",
                "run",
                str(v1),
                "--input",
                str(data),
                "--out",
                str(tmp_path / "o"),
                "--format",
                "parquet",
            ]
        )
        assert rc == 2
        err = capsys.readouterr().err
        assert "[VIEW_PARQUET_UNAVAILABLE]" in err and "pyarrow" in err
        assert not (tmp_path / "o").exists()
    else:
        data, v1, _ = _files(tmp_path)
        assert (
            main(
                [
                    "view",
                    "run",
                    str(v1),
                    "--input",
                    str(data),
                    "--out",
                    str(tmp_path / "o"),
                    "--format",
                    "parquet",
                ]
            )
            == 0
        )
        import pyarrow.parquet as pq

        assert pq.read_table(tmp_path / "o" / "obs.parquet").num_rows == 2


def test_a_view_with_an_r4_path_for_r5_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = {
        "resource": "Encounter",
        "fhirVersion": ["5.0.0"],
        "select": [{"column": [{"name": "c", "path": "class.code"}]}],
    }
    v = tmp_path / "enc.json"
    v.write_bytes(orjson.dumps(view))
    assert (
        main(["view", "run", str(v), "--input", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    )
    assert "[VIEW_PATH_NOT_IN_RELEASE]" in capsys.readouterr().err


async def test_input_from_a_fhir_base_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resources: list[dict[str, Any]] = [
        patient("p1"),
        patient("p2", gender="male"),
        obs("o1", "p1", "4548-4", 6.0, "%", "2020-01-01"),
    ]
    _, v1, v2 = _files(tmp_path)
    out = tmp_path / "out"
    config = ServerConfig(resources=resources, default_page_size=1, fhir_version="5.0.0")
    async with FhirTestServer(config) as srv:
        rc = await asyncio.to_thread(
            main,
            ["view", "run", str(v1), str(v2), "--input", srv.base_url, "--out", str(out), "--json"],
        )
    assert rc == 0
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["fhir_version"] == "R5"  # the server's CapabilityStatement decides
    with (out / "patients.csv").open() as fh:
        assert list(csv.reader(fh))[1:] == [["p1", "female"], ["p2", "male"]]
    with (out / "obs.csv").open() as fh:
        assert list(csv.reader(fh))[1:] == [["o1", "p1", "Patient/p1", "6.0"]]


async def test_input_from_a_bulk_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fhir_adapters.testing.fhir_test_server import ExportBehaviour

    resources: list[dict[str, Any]] = [
        patient("p1"),
        obs("o1", "p1", "4548-4", 6.0, "%", "2020-01-01"),
    ]
    _, v1, _ = _files(tmp_path)
    out = tmp_path / "out"
    config = ServerConfig(
        resources=resources, export=ExportBehaviour(errors=[], polls_before_ready=1)
    )
    async with FhirTestServer(config) as srv:
        rc = await asyncio.to_thread(
            main,
            [
                "view",
                "run",
                str(v1),
                "--input",
                srv.base_url,
                "--export",
                "--out",
                str(out),
                "--json",
            ],
        )
    assert rc == 0
    with (out / "obs.csv").open() as fh:
        assert list(csv.reader(fh))[1:] == [["o1", "p1", "Patient/p1", "6.0"]]
