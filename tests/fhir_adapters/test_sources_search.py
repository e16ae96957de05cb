"""FHIR search against the aiohttp test server: paging, retries, errors, capability."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from fhir_adapters.errors import FhirOperationOutcomeError, FhirProtocolError
from fhir_adapters.sources import FhirClient, RetryPolicy, iterate_sync, search, summarize_outcome
from fhir_adapters.sources.http import parse_retry_after
from fhir_adapters.sources.outcome import is_transient_outcome
from fhir_adapters.sources.search import SearchStats
from fhir_adapters.testing.fhir_test_server import (
    FhirTestServer,
    ServerConfig,
    outcome,
    sample_resources,
)

FAST = RetryPolicy(max_attempts=4, backoff_base=0.001, backoff_cap=0.01)


@pytest.fixture
async def server() -> AsyncIterator[FhirTestServer]:
    async with FhirTestServer(ServerConfig(resources=sample_resources(10, 3))) as srv:
        yield srv


async def _collect(
    client: FhirClient, rtype: str, params: Any = (), **kw: Any
) -> list[dict[str, Any]]:
    return [r async for r in search(client, rtype, params, **kw)]


async def test_paging_over_several_pages(server: FhirTestServer) -> None:
    stats = SearchStats()
    async with FhirClient(server.base_url, retry=FAST) as client:
        found = await _collect(client, "Observation", count=7, stats=stats)
    assert len(found) == 30
    assert len({r["id"] for r in found}) == 30
    assert stats.pages == 5  # 7+7+7+7+2
    assert stats.total == 30
    assert server.counts["search"] == 5


async def test_search_parameters_and_limit(server: FhirTestServer) -> None:
    async with FhirClient(server.base_url, retry=FAST) as client:
        obs = await _collect(client, "Observation", [("subject", "Patient/p0003")], count=2)
        limited = await _collect(client, "Observation", count=4, limit=5)
    assert {o["subject"]["reference"] for o in obs} == {"Patient/p0003"}
    assert len(obs) == 3
    assert len(limited) == 5
    assert server.counts["search"] == 2 + 2  # the limit stops paging


async def test_capability_read_once(server: FhirTestServer) -> None:
    async with FhirClient(server.base_url) as client:
        cap = await client.capability()
        again = await client.capability()
    assert cap is again
    assert server.counts["metadata"] == 1
    assert cap.fhir_version == "4.0.1" and cap.release == "R4"
    assert cap.export_levels == {"system", "patient", "group"}


@pytest.mark.parametrize("failures", [[503], [500, 502], [429]])
async def test_transient_errors_then_success(failures: list[int]) -> None:
    config = ServerConfig(resources=sample_resources(3, 1), search_failures=list(failures))
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    async with (
        FhirTestServer(config) as srv,
        FhirClient(srv.base_url, retry=FAST, sleep=fake_sleep) as client,
    ):
        found = await _collect(client, "Patient")
    assert len(found) == 3
    assert len(delays) == len(failures)
    assert client.stats.retries == len(failures)


async def test_retries_are_bounded() -> None:
    config = ServerConfig(resources=sample_resources(2, 0), search_failures=[503] * 10)
    async with FhirTestServer(config) as srv, FhirClient(srv.base_url, retry=FAST) as client:
        with pytest.raises(FhirOperationOutcomeError) as info:
            await _collect(client, "Patient")
    assert info.value.status == 503
    assert "after 4 attempts" in str(info.value)
    assert srv.counts["search"] == 4


async def test_unknown_parameter_surfaces_operation_outcome(server: FhirTestServer) -> None:
    async with FhirClient(server.base_url, retry=FAST) as client:
        with pytest.raises(FhirOperationOutcomeError) as info:
            await _collect(client, "Observation", [("bogus", "1")])
    err = info.value
    assert err.code == "FHIR_OPERATION_OUTCOME"
    assert err.status == 400
    assert "Unknown search parameter 'bogus'" in str(err)
    assert "\n" not in str(err)
    assert "bogus=1" not in str(err)  # the query string is never echoed
    assert server.counts["search"] == 1  # a 4xx is not retried


async def test_foreign_next_link_refused() -> None:
    from aiohttp import web

    async def page(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": [{"relation": "next", "url": "http://evil.example/fhir/Patient?page=2"}],
                "entry": [{"resource": {"resourceType": "Patient", "id": "a"}}],
            }
        )

    app = web.Application()
    app.router.add_get("/fhir/Patient", page)
    from aiohttp.test_utils import TestServer

    async with TestServer(app) as ts, FhirClient(str(ts.make_url("/fhir"))) as client:
        with pytest.raises(FhirProtocolError, match="another origin"):
            await _collect(client, "Patient")


def test_iterate_sync_from_plain_code(tmp_path: Any) -> None:
    """A synchronous consumer (views, features) reads the async search as an Iterator."""
    import asyncio
    import threading

    ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            srv = FhirTestServer(ServerConfig(resources=sample_resources(40, 10)))
            holder["base"] = await srv.start()
            holder["stop"] = asyncio.Event()
            holder["loop"] = asyncio.get_running_loop()
            ready.set()
            await holder["stop"].wait()
            await srv.stop()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:

        async def produce() -> AsyncIterator[dict[str, Any]]:
            async with FhirClient(holder["base"]) as client:
                async for r in search(client, "Observation", count=100):
                    yield r

        ids = [r["id"] for r in iterate_sync(produce)]
        assert len(ids) == 400
        # Stopping early closes the producer cleanly.
        first = next(iter(iterate_sync(produce)))
        assert first["resourceType"] == "Observation"
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


def test_outcome_summary_and_transient() -> None:
    oo = outcome("not-supported", "Unknown\nparameter  'x'")
    assert summarize_outcome(oo) == "error/not-supported: Unknown parameter 'x'"
    assert summarize_outcome({"resourceType": "Patient"}) is None
    assert is_transient_outcome(outcome("throttled", "slow down"))
    assert not is_transient_outcome(outcome("processing", "bad"))
    details = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "fatal", "code": "exception", "details": {"text": "boom"}}],
    }
    assert summarize_outcome(details) == "fatal/exception: boom"


def test_parse_retry_after() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    assert parse_retry_after(None) is None


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=8.0)
    for attempt in range(20):
        assert policy.backoff(attempt) <= 8.0
    assert policy.delay(3, 42.0) == 42.0
