"""A real ``ehds fhir export`` process killed mid-poll, then resumed from its saved status URL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import orjson
import pytest

from fhir_adapters.sources.export_state import load_state
from fhir_adapters.testing.fhir_test_server import (
    ExportBehaviour,
    FhirTestServer,
    ServerConfig,
    sample_resources,
)

ROOT = Path(__file__).resolve().parents[2]


async def _spawn(*argv: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *argv,
        cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _wait_for(condition: object, *, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_resume_after_kill_mid_poll(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(hold=True, retry_after="0.05")
    out = tmp_path / "export"
    async with FhirTestServer(
        ServerConfig(resources=sample_resources(10, 3), export=behaviour)
    ) as srv:
        argv = ("fhir", "export", "--base", srv.base_url, "--out", str(out), "--json")
        argv += ("--poll-floor", "0.05")
        proc = await _spawn(*argv)
        try:
            await _wait_for(lambda: srv.counts["poll"] >= 3)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)  # no chance to clean up
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        state = load_state(out)
        assert state is not None and state.status_url and state.manifest is None
        assert srv.counts["kickoff"] == 1 and srv.counts["delete"] == 0
        assert not list(out.glob("*.ndjson"))

        srv.release_exports()
        proc = await _spawn(*argv)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, stderr.decode()
        summary = orjson.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["resumed"] is True
    assert summary["resources"] == 41
    assert srv.counts["kickoff"] == 1  # the second process never kicked off again
    assert srv.counts["delete"] == 1
    assert len(list(out.glob("*.ndjson"))) == 3


@pytest.mark.slow
async def test_operation_outcome_one_line_from_a_real_process() -> None:
    async with FhirTestServer(ServerConfig(resources=sample_resources(2, 1))) as srv:
        proc = await _spawn("fhir", "search", "--base", srv.base_url, "Observation", "bogus=1")
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 2
    assert stdout == b""
    assert stderr.decode().splitlines() == [
        "ehds: error: [FHIR_OPERATION_OUTCOME] HTTP 400 from search Observation page 1: "
        "error/not-supported: Unknown search parameter 'bogus' for Observation"
    ]


@pytest.mark.slow
async def test_standalone_server_entry_point(tmp_path: Path) -> None:
    """``python -m fhir_adapters.testing.fhir_test_server --ndjson DIR`` serves a folder (the demo's way)."""
    from fhir_adapters.sources import FhirClient, search

    (tmp_path / "Patient.ndjson").write_bytes(
        b"".join(
            orjson.dumps(r) + b"\n"
            for r in sample_resources(4, 0)
            if r["resourceType"] == "Patient"
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fhir_adapters.testing.fhir_test_server",
        "--ndjson", str(tmp_path), "--port", "0",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=120)).decode()
        assert line.startswith("FHIR test server at http://127.0.0.1:"), line
        base = line.split()[4]
        async with FhirClient(base) as client:
            found = [r async for r in search(client, "Patient")]
            assert (await client.capability()).supports_export
        assert len(found) == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
