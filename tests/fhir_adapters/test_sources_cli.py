"""``ehds fhir`` against the test server: search, export, metadata, one-line errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jwcrypto import jwk

from fhir_adapters.testing.fhir_test_server import (
    ExportBehaviour,
    FhirTestServer,
    ServerConfig,
    SmartSettings,
    sample_resources,
)
from gateway import cli


@pytest.fixture
async def server() -> AsyncIterator[FhirTestServer]:
    config = ServerConfig(
        resources=sample_resources(10, 3),
        default_page_size=4,
        export=ExportBehaviour(errors=[], polls_before_ready=2),
    )
    async with FhirTestServer(config) as srv:
        yield srv


async def ehds(*argv: str) -> int:
    """Run the CLI in a worker thread (it runs its own event loop; ours serves)."""
    return await asyncio.to_thread(cli.main, list(argv))


def _last_json(text: str) -> dict[str, Any]:
    return dict(orjson.loads(text.strip().splitlines()[-1]))


async def test_search_to_file(server: FhirTestServer, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "obs.ndjson"
    rc = await ehds(
        "fhir", "search", "--base", server.base_url, "Observation", "status=final",
        "--count", "7", "--out", str(out), "--json",
    )  # fmt: skip
    assert rc == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["resources"] == 30 and summary["pages"] == 5 and summary["total"] == 30
    lines = out.read_bytes().splitlines()
    assert len(lines) == 30
    assert all(orjson.loads(line)["resourceType"] == "Observation" for line in lines)


async def test_search_to_stdout(server: FhirTestServer, capsys: Any) -> None:
    rc = await ehds("fhir", "search", "--base", server.base_url, "Patient", "--limit", "5")
    captured = capsys.readouterr()
    assert rc == 0
    assert [orjson.loads(x)["resourceType"] for x in captured.out.splitlines()] == ["Patient"] * 5
    assert "5 Patient resources" in captured.err


async def test_server_4xx_outcome_is_one_line(server: FhirTestServer, capsys: Any) -> None:
    rc = await ehds("fhir", "search", "--base", server.base_url, "Observation", "bogus=1")
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert lines == [
        "ehds: error: [FHIR_OPERATION_OUTCOME] HTTP 400 from search Observation page 1: "
        "error/not-supported: Unknown search parameter 'bogus' for Observation"
    ]
    assert "Traceback" not in captured.err


async def test_export_then_incremental(server: FhirTestServer, tmp_path: Path, capsys: Any) -> None:
    full = tmp_path / "full"
    rc = await ehds("fhir", "export", "--base", server.base_url, "--out", str(full), "--json")
    assert rc == 0
    first = _last_json(capsys.readouterr().out)
    assert first["resources"] == 41 and first["job_deleted"]
    assert (full / ".export-state").exists()

    rc = await ehds(
        "fhir", "export", "--base", server.base_url, "--type", "Patient,Observation",
        "--since-state", str(full), "--out", str(tmp_path / "incr"),
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "exported 0 resources" in out
    assert f"--since {first['transaction_time']}" not in out  # a new transactionTime
    assert "next incremental export: --since" in out


async def test_export_bad_since_is_refused(
    server: FhirTestServer, tmp_path: Path, capsys: Any
) -> None:
    rc = await ehds(
        "fhir", "export", "--base", server.base_url, "--since", "last week", "--out", str(tmp_path)
    )
    assert rc == 2
    assert capsys.readouterr().err.startswith("ehds: error: [BULK_BAD_REQUEST] _since must be")
    assert server.counts["kickoff"] == 0


async def test_export_with_smart_options(tmp_path: Path, capsys: Any) -> None:
    key = jwk.JWK.generate(kty="EC", crv="P-384", kid="k1")
    key_file = tmp_path / "client.jwk"
    key_file.write_text(key.export_private())
    smart = SmartSettings(clients={"gw": {"keys": [orjson.loads(key.export_public())]}})
    async with FhirTestServer(ServerConfig(resources=sample_resources(3, 1), smart=smart)) as srv:
        rc = await ehds(
            "fhir", "export", "--base", srv.base_url, "--client-id", "gw", "--key", str(key_file),
            "--out", str(tmp_path / "out"), "--json",
        )  # fmt: skip
        assert rc == 0
        assert _last_json(capsys.readouterr().out)["resources"] == 7
        assert srv.counts["token_issued"] == 1

        wrong = jwk.JWK.generate(kty="EC", crv="P-384", kid="k1")
        key_file.write_text(wrong.export_private())
        rc = await ehds(
            "fhir", "search", "--base", srv.base_url, "Patient",
            "--client-id", "gw", "--key", str(key_file),
        )  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith(
        "ehds: error: [SMART_AUTH_REFUSED] token endpoint refused client 'gw'"
    )


async def test_metadata(server: FhirTestServer, capsys: Any) -> None:
    rc = await ehds("fhir", "metadata", "--base", server.base_url, "--json")
    assert rc == 0
    cap = _last_json(capsys.readouterr().out)
    assert cap["fhir_version"] == "4.0.1"
    assert cap["export_levels"] == ["group", "patient", "system"]


def test_progress_display_handles_every_event() -> None:
    from fhir_adapters.sources import ExportProgress
    from gateway.commands.fhir import _progress

    with _progress(True) as hook:
        for event in (
            ExportProgress(phase="kickoff"),
            ExportProgress(phase="resume", polls=3),
            ExportProgress(phase="polling", polls=4, message="40% done", next_poll=2.0),
            ExportProgress(phase="manifest_page", polls=2),
            ExportProgress(phase="expired"),
            ExportProgress(phase="manifest", files_total=2),
            ExportProgress(phase="file", files_total=2, files_done=1, resources=10, bytes=100),
            ExportProgress(phase="file", files_total=2, files_done=2, resources=20, bytes=200),
            ExportProgress(phase="done", resources=20),
        ):
            hook(event)
    with _progress(False) as hook:
        assert hook is None
