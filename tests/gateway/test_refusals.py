"""Refused HTTP requests are audited (aggregated per client and reason); bad input is 4xx."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.http.refusals import REFUSALS_KEY, RefusalAudit
from tests.gateway.conftest import Api, Keys, audit_events, is_http_refusal
from tests.gateway.test_hdab_api import problem


def _refusals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if is_http_refusal(e)]


def _audit(api: Api) -> RefusalAudit:
    assert api.client.app is not None
    audit = api.client.app[REFUSALS_KEY]
    assert isinstance(audit, RefusalAudit)
    return audit


@pytest.mark.parametrize("service", ["hdab", "node"])
async def test_refusals_are_audited_with_their_reason(
    service: str, hdab: Api, node: Api, keys: Keys
) -> None:
    api = hdab if service == "hdab" else node
    path = "/applications" if service == "hdab" else "/features/dry-run"
    await problem(await api.call("POST", path, json={"spec": {}}), 401, "AUTH_MISSING")
    await problem(await api.call("POST", path, key=keys.auditor, json={}), 403, "AUTH_FORBIDDEN")
    big = b'{"pad": "' + b"x" * 300_000 + b'"}'
    await problem(await api.call("POST", path, key=keys.staff, raw=big), 413, "BODY_TOO_LARGE")
    await problem(
        await api.call("POST", path, raw=b"a=b", headers={"Content-Type": "text/plain"}),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    refusals = _refusals(await audit_events(api))
    by_reason = {e["details"]["reason"]: e for e in refusals}
    assert {"auth_missing", "auth_forbidden", "body_too_large", "unsupported_media_type"} <= set(
        by_reason
    )
    forbidden = by_reason["auth_forbidden"]
    assert forbidden["details"]["requester"] == keys.auditor.thumbprint()  # the signer's kid
    assert forbidden["details"]["operation"] == "http.post"
    assert "requester" not in by_reason["auth_missing"]["details"]  # unsigned: no client named
    for event in refusals:  # no path, address or identifier in the event
        assert set(event["details"]) <= {"reason", "operation", "count", "requester"}


async def test_a_flood_of_refusals_is_one_event_per_window(hdab: Api) -> None:
    audit = _audit(hdab)
    audit.window = 0.5
    before = len(_refusals(await audit_events(hdab)))
    for _ in range(30):
        await problem(await hdab.call("POST", "/applications", json={}), 401, "AUTH_MISSING")
    flood = _refusals(await audit_events(hdab))[before:]
    assert [e["details"]["count"] for e in flood] == [1]  # 29 more only counted
    await asyncio.sleep(0.6)  # the window closes; the periodic flush writes the count
    for _ in range(20):
        await asyncio.sleep(0.1)
        flood = _refusals(await audit_events(hdab))[before:]
        if len(flood) > 1:
            break
    assert [e["details"]["count"] for e in flood] == [1, 29]


@pytest.mark.parametrize("service", ["hdab", "node"])
async def test_malformed_inputs_are_4xx_problems(service: str, hdab: Api, node: Api) -> None:
    api = hdab if service == "hdab" else node
    # a Unicode digit: str.isdigit() says yes, int() says no
    await problem(
        await api.call("GET", "/audit/proof/inclusion?index=%C2%B2"), 400, "PARAMETER_INVALID"
    )
    resp = await api.call("GET", "/health", headers={"X-Long": "a" * 9000})
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    await problem(resp, 400, "HEADER_TOO_LARGE")
    resp = await api.call("GET", "/health", headers={"X-Long": "a" * 20_000})
    await problem(resp, 400, "HEADER_TOO_LARGE")


def _nested(depth: int) -> bytes:
    return b'{"spec": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


async def test_deep_specs_and_fhirpath_in_a_dry_run_are_4xx(node: Api, keys: Keys) -> None:
    from fhir_adapters.testing.synthetic import synthetic_spec_document

    resp = await node.call("POST", "/features/dry-run", key=keys.operator, raw=_nested(1000))
    assert 400 <= resp.status < 500, await resp.text()
    spec = synthetic_spec_document()
    deep = "(" * 3000 + "birthDate" + ")" * 3000
    spec["views"]["patient"]["select"][0]["column"][1]["path"] = deep
    resp = await node.call("POST", "/features/dry-run", key=keys.operator, json={"spec": spec})
    assert 400 <= resp.status < 500, await resp.text()
    body = orjson.loads(await resp.read())
    assert body["code"]  # a stable code, never a traceback
