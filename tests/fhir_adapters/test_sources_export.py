"""Bulk Data ``$export`` against the aiohttp test server (IG 3.0.0 behaviours)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapters.errors import (
    BulkExportError,
    BulkExportTimeout,
    FhirCapabilityError,
    FhirOperationOutcomeError,
)
from fhir_adapters.sources import (
    BulkExporter,
    ExportProgress,
    ExportRequest,
    FhirClient,
    RetryPolicy,
    read_export_dir,
)
from fhir_adapters.sources.bulk_export import ReadStats
from fhir_adapters.sources.export_state import STATE_FILE, load_state
from fhir_adapters.testing.fhir_test_server import (
    ExportBehaviour,
    FhirTestServer,
    ServerConfig,
    outcome,
    sample_resources,
)

FAST = RetryPolicy(max_attempts=4, backoff_base=0.001, backoff_cap=0.01)


class Recorder:
    """Fake sleep: records every wait the client asks for, waits for none of it."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 1000.0

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        """A monotonic clock that advances only by the waits asked for."""
        return self.now


def _server(behaviour: ExportBehaviour | None = None, **kw: Any) -> FhirTestServer:
    return FhirTestServer(
        ServerConfig(resources=sample_resources(10, 3), export=behaviour or ExportBehaviour(), **kw)
    )


def _ids(out: Path) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in read_export_dir(out)}


async def test_system_export_downloads_everything(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(resources_per_file=7)
    async with _server(behaviour) as srv, FhirClient(srv.base_url, retry=FAST) as client:
        result = await BulkExporter(client).run(ExportRequest(), tmp_path)
    assert result.resources == 10 + 30 + 1
    assert result.resources_by_type == {"Patient": 10, "Observation": 30, "Group": 1}
    assert len(_ids(tmp_path)) == 41
    # Bulk Data layout: <Type>.<n>.ndjson at the top, manifest with local paths.
    names = sorted(p.name for p in tmp_path.glob("*.ndjson"))
    assert names[:2] == ["Group.001.ndjson", "Observation.001.ndjson"]
    assert len([n for n in names if n.startswith("Observation.")]) == 5
    assert not list(tmp_path.glob("*.json"))  # bookkeeping never looks like FHIR data
    assert orjson.loads((tmp_path / STATE_FILE).read_bytes())["manifest"]["transactionTime"]
    assert srv.counts["delete"] == 1 and result.job_deleted
    assert result.fhir_version == "4.0.1"
    state = load_state(tmp_path)
    assert state is not None and state.completed
    assert state.transaction_time == result.transaction_time == result.next_since
    assert all(f.sha256.startswith("sha256:") for f in result.files)


async def test_slow_export_honours_retry_after_and_reports_progress(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(polls_before_ready=3, retry_after="7")
    sleep = Recorder()
    events: list[ExportProgress] = []
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=sleep) as client,
    ):
        result = await BulkExporter(client, on_progress=events.append).run(
            ExportRequest(), tmp_path
        )
    polling = [e for e in events if e.phase == "polling"]
    assert [e.message for e in polling] == ["25% complete", "50% complete", "75% complete"]
    assert sleep.delays == [7.0, 7.0, 7.0]  # exactly what the server asked for
    assert result.polls == 4 and srv.counts["poll"] == 4


async def test_polling_without_retry_after_backs_off_capped(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(polls_before_ready=8, retry_after=None, progress=False)
    sleep = Recorder()
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=sleep) as client,
    ):
        exporter = BulkExporter(client, poll_backoff_base=1.0, poll_backoff_cap=10.0)
        await exporter.run(ExportRequest(types=("Patient",)), tmp_path)
    assert sleep.delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]
    # The server's own Retry-After is honoured beyond the backoff cap; only absurd waits are capped.
    assert exporter.poll_delay(0, 300.0) == 300.0
    assert exporter.poll_delay(0, 86400.0) == 3600.0


async def test_transient_5xx_then_success(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(
        kickoff_failures=[503],
        poll_failures=[502, 504],
        transient_outcome_failures=1,
        download_failures=[500],
    )
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        result = await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path)
    assert result.resources == 10
    assert srv.counts["kickoff"] == 2  # one failure, one success
    assert srv.counts["kickoff_failed"] == 1
    assert srv.counts["poll_failed"] == 2
    assert srv.counts["download_failed"] == 1
    assert client.stats.retries == 5


async def test_download_cut_mid_body_is_retried_from_scratch(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(truncated_downloads=2, gzip="none")
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        result = await BulkExporter(client).run(ExportRequest(types=("Observation",)), tmp_path)
    assert srv.counts["download_truncated"] == 2
    assert result.resources == 30 and result.bad_lines == 0
    assert len(list(read_export_dir(tmp_path))) == 30  # no duplicate or half lines kept
    assert not list(tmp_path.glob("*.part"))


async def test_429_throttling_is_retried(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(kickoff_failures=[429, 429], poll_failures=[429])
    sleep = Recorder()
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=sleep) as client,
    ):
        result = await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path)
    assert result.resources == 10
    assert client.stats.statuses[429] == 3
    assert srv.counts["kickoff"] == 3


async def test_failed_job_reports_the_outcome(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(fail_job=True)
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        with pytest.raises(BulkExportError) as info:
            await BulkExporter(client).run(ExportRequest(), tmp_path)
    assert info.value.code == "BULK_EXPORT_FAILED"
    assert "the store went away" in str(info.value)
    assert srv.counts["poll"] == 1  # a failed job (non-transient outcome) is not hammered


async def test_error_file_with_operation_outcomes(tmp_path: Path) -> None:
    errors = [
        outcome("not-found", "Observation/x referenced a missing Patient"),
        outcome("processing", "could not serialise one resource"),
        outcome("processing", "another one"),
    ]
    async with (
        _server(ExportBehaviour(errors=errors)) as srv,
        FhirClient(srv.base_url, retry=FAST) as client,
    ):
        result = await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path)
    assert result.error_outcomes == 3
    assert result.error_codes == {"not-found": 1, "processing": 2}
    assert (tmp_path / "error" / "OperationOutcome.001.ndjson").exists()
    # Errors are reported, never mixed into the resource stream.
    assert all(r["resourceType"] == "Patient" for r in read_export_dir(tmp_path))
    assert result.as_dict()["error_outcomes"] == 3


async def test_deleted_file(tmp_path: Path) -> None:
    deleted = [("Patient", "gone1"), ("Observation", "gone2"), ("Observation", "gone3")]
    async with (
        _server(ExportBehaviour(deleted=deleted)) as srv,
        FhirClient(srv.base_url, retry=FAST) as client,
    ):
        result = await BulkExporter(client).run(
            ExportRequest(since="2024-01-05T00:00:00Z"), tmp_path
        )
    assert result.deleted == 3
    assert result.deleted_by_type == {"Patient": 1, "Observation": 2}
    assert (tmp_path / "deleted" / "Bundle.001.ndjson").exists()
    assert not any(r["resourceType"] == "Bundle" for r in read_export_dir(tmp_path))


@pytest.mark.parametrize("mode", ["encoding", "body", "none"])
async def test_gzip_and_bad_lines_are_counted_not_fatal(tmp_path: Path, mode: str) -> None:
    behaviour = ExportBehaviour(gzip=mode, bad_lines=2)
    async with _server(behaviour) as srv, FhirClient(srv.base_url, retry=FAST) as client:
        result = await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path)
    assert result.resources == 10
    assert result.bad_lines == 2
    stats = ReadStats()
    assert len(list(read_export_dir(tmp_path, stats=stats))) == 10
    assert stats.bad_lines == 0  # bad lines never reach disk


async def test_since_type_filter_and_levels(tmp_path: Path) -> None:
    async with _server() as srv, FhirClient(srv.base_url, retry=FAST) as client:
        exporter = BulkExporter(client)
        since = await exporter.run(
            ExportRequest(types=("Patient",), since="2024-01-05T00:00:00Z"), tmp_path / "since"
        )
        filtered = await exporter.run(
            ExportRequest(
                types=("Observation",),
                type_filters=("Observation?subject=Patient/p0001",),
            ),
            tmp_path / "filter",
        )
        group = await exporter.run(
            ExportRequest(level="group", group_id="cohort"), tmp_path / "group"
        )
        patient = await exporter.run(
            ExportRequest(level="patient", types=("Patient", "Observation")), tmp_path / "patient"
        )
    assert since.resources == 5  # lastUpdated 2024-01-06 .. 2024-01-10
    assert filtered.resources == 3
    assert group.resources_by_type == {"Patient": 5, "Observation": 15}
    assert patient.resources_by_type == {"Patient": 10, "Observation": 30}


async def test_patient_parameter_kicks_off_by_post(tmp_path: Path) -> None:
    async with _server() as srv, FhirClient(srv.base_url, retry=FAST) as client:
        exporter = BulkExporter(client)
        two = await exporter.run(
            ExportRequest(
                level="patient", patients=("p0001", "p0003"), types=("Patient", "Observation")
            ),
            tmp_path / "two",
        )
        in_group = await exporter.run(
            ExportRequest(level="group", group_id="cohort", patients=("p0002",)), tmp_path / "group"
        )
        with pytest.raises(FhirOperationOutcomeError, match="not in scope"):
            await exporter.run(
                ExportRequest(level="group", group_id="cohort", patients=("p0009",)),
                tmp_path / "outside",
            )
    assert two.resources_by_type == {"Patient": 2, "Observation": 6}
    assert {
        r["id"] for r in read_export_dir(tmp_path / "two") if r["resourceType"] == "Patient"
    } == {
        "p0001",
        "p0003",
    }
    assert in_group.resources_by_type == {"Patient": 1, "Observation": 3}
    body = ExportRequest(level="patient", patients=("p1",), since="2024-01-01T00:00:00Z")
    assert body.method == "POST"
    params = body.parameters_resource()["parameter"]
    assert {"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"} in params
    assert {"name": "patient", "valueReference": {"reference": "Patient/p1"}} in params


async def test_incremental_export_uses_transaction_time(tmp_path: Path) -> None:
    async with _server() as srv, FhirClient(srv.base_url, retry=FAST) as client:
        exporter = BulkExporter(client)
        first = await exporter.run(ExportRequest(types=("Patient",)), tmp_path / "full")
        later = await exporter.run(
            ExportRequest(types=("Patient",), since=first.next_since), tmp_path / "incr"
        )
    assert first.resources == 10
    assert later.resources == 0  # nothing changed since the first transactionTime


async def test_deadline_keeps_the_job_then_resume(tmp_path: Path) -> None:
    behaviour = ExportBehaviour(hold=True, retry_after="5")
    sleep = Recorder()
    async with (
        _server(behaviour) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=sleep, clock=sleep.clock) as client,
    ):
        with pytest.raises(BulkExportTimeout) as info:
            await BulkExporter(client, deadline=12.0).run(ExportRequest(), tmp_path)
        assert info.value.code == "BULK_EXPORT_TIMEOUT"
        assert sleep.delays == [5.0, 5.0]  # a third wait would cross the deadline
        state = load_state(tmp_path)
        assert state is not None and state.status_url and not state.completed
        assert srv.counts["delete"] == 0  # the job is kept for a resume
        srv.release_exports()
        result = await BulkExporter(client).run(ExportRequest(), tmp_path)
    assert result.resumed
    assert srv.counts["kickoff"] == 1
    assert result.resources == 41


async def test_resume_after_manifest_downloads_only_missing_files(tmp_path: Path) -> None:
    from fhir_adapters.sources.export_state import save_state

    behaviour = ExportBehaviour(resources_per_file=4, polls_before_ready=2)
    async with _server(behaviour) as srv, FhirClient(srv.base_url, retry=FAST) as client:
        await BulkExporter(client, delete_when_done=False).run(ExportRequest(), tmp_path)
        # As if killed after the manifest and some downloads: two files missing, not completed.
        state = load_state(tmp_path)
        assert state is not None
        state.completed = False
        lost = sorted(state.files)[:2]
        for url in lost:
            (tmp_path / state.files.pop(url).path).unlink()
        save_state(tmp_path, state)
        before = dict(srv.counts)
        result = await BulkExporter(client).run(ExportRequest(), tmp_path)
    assert result.resumed and result.resources == 41
    assert srv.counts["download"] - before["download"] == 2
    assert srv.counts["poll"] == before["poll"] and srv.counts["kickoff"] == 1
    assert srv.counts["delete"] == 1
    assert len(_ids(tmp_path)) == 41


async def test_resume_refuses_another_request_and_restart_works(tmp_path: Path) -> None:
    async with (
        _server(ExportBehaviour(hold=True)) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        with pytest.raises(BulkExportTimeout):
            await BulkExporter(client, deadline=0.0).run(ExportRequest(), tmp_path)
        with pytest.raises(BulkExportError) as info:
            await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path)
        assert info.value.code == "BULK_STATE_MISMATCH"
        srv.release_exports()
        result = await BulkExporter(client).run(
            ExportRequest(types=("Patient",)), tmp_path, restart=True
        )
    assert result.resources == 10 and not result.resumed
    assert srv.counts["kickoff"] == 2
    assert srv.counts["delete"] == 2  # the abandoned job and the finished one


async def test_expired_job_is_a_clear_error(tmp_path: Path) -> None:
    async with (
        _server(ExportBehaviour(hold=True)) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=Recorder()) as client,
    ):
        with pytest.raises(BulkExportTimeout):
            await BulkExporter(client, deadline=0.0).run(ExportRequest(), tmp_path)
        srv.jobs.clear()
        with pytest.raises(BulkExportError) as info:
            await BulkExporter(client).run(ExportRequest(), tmp_path)
    assert info.value.code == "BULK_EXPORT_EXPIRED"


async def test_completed_directory_is_idempotent_and_foreign_files_refused(tmp_path: Path) -> None:
    async with _server() as srv, FhirClient(srv.base_url, retry=FAST) as client:
        first = await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path / "a")
        again = await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path / "a")
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "Other.ndjson").write_text("{}\n")
        with pytest.raises(BulkExportError) as info:
            await BulkExporter(client).run(ExportRequest(), tmp_path / "b")
    assert again.resources == first.resources and srv.counts["kickoff"] == 1
    assert info.value.code == "BULK_OUT_NOT_EMPTY"


async def test_capability_without_export_is_refused(tmp_path: Path) -> None:
    async with _server() as srv, FhirClient(srv.base_url, retry=FAST) as client:
        await client.capability()
        assert client._capability is not None
        object.__setattr__(client._capability, "export_levels", frozenset({"system"}))
        with pytest.raises(FhirCapabilityError):
            await BulkExporter(client).run(ExportRequest(level="patient"), tmp_path)
    assert srv.counts["kickoff"] == 0


async def test_stream_straight_into_the_resource_stream() -> None:
    async with (
        _server(ExportBehaviour(bad_lines=1, resources_per_file=4)) as srv,
        FhirClient(srv.base_url, retry=FAST) as client,
    ):
        exporter = BulkExporter(client)
        seen = [r async for r in exporter.stream(ExportRequest(types=("Observation",)))]
    assert len(seen) == 30
    assert exporter.stream_bad_lines == 1
    assert srv.counts["delete"] == 1


def test_request_validation() -> None:
    with pytest.raises(BulkExportError, match="group id"):
        ExportRequest(level="group")
    with pytest.raises(BulkExportError, match="instant"):
        ExportRequest(since="yesterday")
    with pytest.raises(BulkExportError, match="resource type"):
        ExportRequest(types=("patient; DROP",))
    with pytest.raises(BulkExportError, match="Patient or Group"):
        ExportRequest(patients=("p1",))
    with pytest.raises(BulkExportError, match="_typeFilter"):
        ExportRequest(type_filters=("code=1",))
    req = ExportRequest(
        level="group",
        group_id="g1",
        types=("Patient", "Observation"),
        since="2024-01-01T00:00:00Z",
        type_filters=("Observation?code=x",),
    )
    assert req.path == "Group/g1/$export"
    assert ("_type", "Patient,Observation") in req.params()
    assert STATE_FILE == ".export-state"


def test_manifest_must_name_http_files() -> None:
    from fhir_adapters.errors import FhirProtocolError
    from fhir_adapters.sources.bulk_export import parse_manifest

    good = {
        "transactionTime": "2026-01-01T00:00:00Z",
        "output": [{"type": "Patient", "url": "https://x/1"}],
    }
    assert parse_manifest(good) is good
    for bad_url in ("file:///etc/passwd", "ftp://x/1", "/relative"):
        bad = {**good, "output": [{"type": "Patient", "url": bad_url}]}
        with pytest.raises(FhirProtocolError, match="http"):
            parse_manifest(bad)
    with pytest.raises(FhirProtocolError, match="type"):
        parse_manifest({**good, "output": [{"type": "../../etc", "url": "https://x/1"}]})
    with pytest.raises(FhirProtocolError, match="transactionTime"):
        parse_manifest({"output": []})


async def test_oversized_json_is_refused_before_it_fills_memory() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from fhir_adapters.errors import FhirProtocolError
    from fhir_adapters.sources.http import read_json

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to trust
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b" " * 4096)
        await resp.write(b"{}")
        return resp

    app = web.Application()
    app.router.add_get("/fhir/metadata", big)
    async with TestServer(app) as ts, FhirClient(str(ts.make_url("/fhir"))) as client:
        async with client.open("GET", "metadata") as resp:
            with pytest.raises(FhirProtocolError, match="limit"):
                await read_json(resp, what="metadata", limit=10_000)
        async with client.open("GET", "metadata") as resp:
            assert await read_json(resp, what="metadata") == {}
