"""What real Bulk Data servers do that the happy path does not (issue #19).

Each case runs against the aiohttp test server on loopback, configured to
behave as the independent server did: absolute-epoch ``Retry-After``, paged
manifests, failed types under ``error[]``, expired files, kick-off failures
that must not be retried, Ctrl-C in the middle of a job.
"""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from fhir_adapters.errors import FhirSourceError
from fhir_adapters.sources import BulkExporter, ExportRequest, FhirClient
from fhir_adapters.sources.export_state import load_state
from fhir_adapters.testing import fhir_test_server
from fhir_adapters.testing.fhir_test_server import (
    ExportBehaviour,
    FhirTestServer,
    ServerConfig,
    sample_resources,
)
from gateway.cli import main
from tests.fhir_adapters.test_sources_export import FAST, Recorder

ROOT = Path(__file__).resolve().parents[2]


def _server(behaviour: ExportBehaviour) -> FhirTestServer:
    return FhirTestServer(ServerConfig(resources=sample_resources(10, 3), export=behaviour))


async def test_throttled_polls_with_epoch_retry_after_in_ms_then_s(tmp_path: Path) -> None:
    # The first 429 says "retry at <epoch ms>", the second "retry at <epoch s>", as seen in the wild.
    behaviour = ExportBehaviour(throttle_polls=2, throttle_seconds=2.0)
    sleep = Recorder()
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=sleep) as client,
    ):
        result = await BulkExporter(client, poll_floor=0.0).run(ExportRequest(), tmp_path)
    assert result.resources == 41
    assert srv.counts["poll_throttled"] == 2
    assert client.stats.statuses[429] == 2
    throttle_waits = sleep.delays[:2]
    # Read as a delay, 1796133498898 would be decades (and the export "failed"); read as
    # an epoch it is the couple of seconds the server asked for.
    assert all(0.0 <= d <= 5.0 for d in throttle_waits), throttle_waits


async def test_cli_shows_every_wait(tmp_path: Path, capsys: Any) -> None:
    behaviour = ExportBehaviour(throttle_polls=1, throttle_seconds=0.0, polls_before_ready=0)
    async with _server(behaviour) as srv:
        argv = ["fhir", "export", "--base", srv.base_url, "--out", str(tmp_path), "--json"]
        assert await asyncio.to_thread(main, [*argv, "--poll-floor", "0"]) == 0
    err = capsys.readouterr().err
    assert "ehds: HTTP 429; retrying in" in err  # a user sees that the server throttled us


async def test_epoch_retry_after_on_202_and_the_polling_floor(tmp_path: Path) -> None:
    for unit in ("ms", "s"):
        behaviour = ExportBehaviour(polls_before_ready=2, retry_after="3", retry_after_epoch=unit)
        sleep = Recorder()
        async with (
            _server(behaviour) as srv,
            FhirClient(srv.base_url, retry=FAST, sleep=sleep) as client,
        ):
            await BulkExporter(client, poll_floor=0.5).run(
                ExportRequest(types=("Patient",)), tmp_path / unit
            )
        assert len(sleep.delays) == 2
        assert all(0.5 <= d <= 5.0 for d in sleep.delays), (unit, sleep.delays)
    # A server saying "0" is still not polled faster than the floor.
    sleep = Recorder()
    behaviour = ExportBehaviour(polls_before_ready=3, retry_after="0")
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=sleep) as client,
    ):
        await BulkExporter(client, poll_floor=0.25).run(
            ExportRequest(types=("Patient",)), tmp_path / "floor"
        )
    assert sleep.delays == [0.25, 0.25, 0.25]


async def test_paged_manifest_is_followed_to_the_end(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(resources_per_file=3, manifest_page_size=2)
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        result = await BulkExporter(client).run(
            ExportRequest(allow_partial_manifests=True), tmp_path
        )
    # 4 Patient files + 10 Observation files + 1 Group file = 15 entries, 8 pages of 2.
    assert result.manifest_pages == 8
    assert srv.counts["manifest_page"] == 7
    assert result.resources == 41
    assert result.resources_by_type == {"Patient": 10, "Observation": 30, "Group": 1}
    assert srv.counts["delete"] == 1  # the job is deleted only after the last page's files


async def test_failed_types_make_a_partial_export(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(fail_types=("Observation",))
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        result = await BulkExporter(client).run(ExportRequest(), tmp_path)
    assert result.partial
    assert result.failed_types == ["Observation"]
    assert result.next_since is None
    assert result.error_codes == {"exception": 1}
    assert (tmp_path / "error" / "OperationOutcome.001.ndjson").exists()
    state = load_state(tmp_path)
    assert state is not None and state.partial and state.failed_types == ["Observation"]
    assert result.as_dict()["next_since"] is None


async def test_cli_partial_exit_code_and_no_since_advice(tmp_path: Path, capsys: Any) -> None:
    behaviour = ExportBehaviour(fail_types=("Observation",), polls_before_ready=0)
    async with _server(behaviour) as srv:
        out = tmp_path / "full"
        argv = ["fhir", "export", "--base", srv.base_url, "--out", str(out), "--poll-floor", "0"]
        code = await asyncio.to_thread(main, argv)
        text = capsys.readouterr().out
        assert code == 3
        assert "PARTIAL export" in text and "Observation" in text
        assert "--since" not in text.replace("--restart", "")
        # A partial export is refused as the base of an incremental one.
        code = await asyncio.to_thread(
            main, [*argv[:5], str(tmp_path / "next"), "--since-state", str(out)]
        )
        err = capsys.readouterr().err
    assert code == 2 and "[BULK_SINCE_PARTIAL]" in err


async def test_expired_files(tmp_path: Path, capsys: Any) -> None:
    behaviour = ExportBehaviour(expire_after_downloads=1, polls_before_ready=0)
    async with _server(behaviour) as srv:
        argv = ["fhir", "export", "--base", srv.base_url, "--out", str(tmp_path), "--concurrency"]
        argv += ["1", "--poll-floor", "0", "--retries", "2"]
        for _ in range(2):  # the same error on a rerun: the files stay gone
            assert await asyncio.to_thread(main, argv) == 2
            err = capsys.readouterr().err
            assert "[BULK_FILE_EXPIRED]" in err and "--restart" in err
            assert "--restart-on-expired" in err
        assert srv.counts["kickoff"] == 1
        srv.config.export.expire_after_downloads = None
        assert await asyncio.to_thread(main, [*argv, "--restart-on-expired", "--json"]) == 0
    summary = capsys.readouterr().out
    assert '"restarted_on_expired":true' in summary and '"resources":41' in summary
    assert srv.counts["kickoff"] == 2


async def test_kickoff_non_transient_500_is_not_retried(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(kickoff_failures=[500], failures_transient=False)
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        with pytest.raises(FhirSourceError) as info:
            await BulkExporter(client).run(ExportRequest(), tmp_path)
    assert "HTTP 500" in str(info.value)
    assert srv.counts["kickoff"] == 1


async def test_kickoff_502_is_not_retried_but_503_is(tmp_path: Path) -> None:
    async with (
        _server(ExportBehaviour(kickoff_failures=[502], failures_transient=False)) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        with pytest.raises(FhirSourceError):
            await BulkExporter(client).run(ExportRequest(), tmp_path / "a")
    assert srv.counts["kickoff"] == 1  # a gateway error may hide a started job
    async with (
        _server(ExportBehaviour(kickoff_failures=[503])) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path / "b")
    assert srv.counts["kickoff"] == 2


@pytest.mark.parametrize("post", [False, True])
async def test_connection_lost_after_sending_the_kickoff_is_not_resent(
    tmp_path: Path, post: bool
) -> None:
    behaviour = ExportBehaviour(kickoff_dropped=1)
    request = ExportRequest(level="patient", patients=("p0001",)) if post else ExportRequest()
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        with pytest.raises(FhirSourceError) as info:
            await BulkExporter(client).run(request, tmp_path)
    assert info.value.code == "FHIR_REQUEST_UNCERTAIN"
    assert srv.counts["kickoff"] == 1  # never a second job


async def test_refused_connection_is_retried_for_a_kickoff(unused_tcp_port: int) -> None:
    sleep = Recorder()
    async with FhirClient(
        f"http://127.0.0.1:{unused_tcp_port}/fhir", retry=FAST, sleep=sleep
    ) as client:
        with pytest.raises(FhirSourceError) as info:
            await BulkExporter(client, check_capability=False).kick_off(ExportRequest())
    assert info.value.code == "FHIR_UNREACHABLE"
    assert len(sleep.delays) == FAST.max_attempts - 1  # nothing was sent: safe to try again


async def test_ctrl_c_leaves_the_job_and_prints_resume_and_cancel(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(hold=True, retry_after="0.05")
    out = tmp_path / "export"
    async with _server(behaviour) as srv:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            *("fhir", "export", "--base", srv.base_url, "--out", str(out)),
            *("--poll-floor", "0.05"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            for _ in range(600):
                if srv.counts["poll"] >= 2:
                    break
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = stderr.decode()
        assert proc.returncode == 130, text
        assert "still running on the server" in text
        assert "resume:" in text and "cancel: ehds fhir export" in text and "--cancel" in text
        assert srv.counts["delete"] == 0  # non-interactive: the job is left to resume
        # The printed cancel command sends the DELETE.
        code = await asyncio.to_thread(
            main, ["fhir", "export", "--base", srv.base_url, "--out", str(out), "--cancel"]
        )
        assert code == 0
        assert srv.counts["delete"] == 1
        assert next(iter(srv.jobs.values())).deleted
    state = load_state(out)
    assert state is not None and state.cancelled and state.job_deleted


def test_test_server_shares_no_code_with_the_client() -> None:
    tree = ast.parse(Path(fhir_test_server.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [None])  # type: ignore[list-item]
    ]
    ours = [m for m in imported if m and m.split(".")[0] in {"fhir_adapters", "gateway"}]
    assert ours == []


def test_expired_message_names_both_remedies() -> None:
    from fhir_adapters.sources.bulk_export import EXPIRED_HINT

    assert "--restart" in EXPIRED_HINT and "--restart-on-expired" in EXPIRED_HINT


async def test_ctrl_c_in_a_terminal_asks_and_cancels(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from fhir_adapters.sources.export_state import ExportState, save_state
    from gateway.commands import fhir as fhir_cmd

    async with _server(ExportBehaviour(hold=True)) as srv:
        async with FhirClient(srv.base_url, retry=FAST) as client:
            status_url = await BulkExporter(client).kick_off(ExportRequest())
        save_state(tmp_path, ExportState(base_url=srv.base_url, request={}, status_url=status_url))
        monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        asked: list[str] = []
        monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "y")
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        fhir_cmd.register(sub)
        args = parser.parse_args(
            ["fhir", "export", "--base", srv.base_url, "--out", str(tmp_path), "--retries", "2"]
        )
        code = await asyncio.to_thread(fhir_cmd._interrupted, args)
        assert code == 130
        assert asked and "Cancel the export job" in asked[0]
        assert srv.counts["delete"] == 1
    assert "cancelled on the server" in capsys.readouterr().err
