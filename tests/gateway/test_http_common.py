"""What every route shares: problems, limits, content types, OpenAPI, metrics, logs."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.http.openapi import openapi_path
from gateway.http.routing import SPECS_KEY
from tests.gateway.conftest import Api, Keys, application_body
from tests.gateway.test_hdab_api import problem


def _app(api: Api) -> web.Application:
    return api.client.server.app  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("service", ["hdab", "node"])
async def test_openapi_matches_the_routes(service: str, hdab: Api, node: Api) -> None:
    api = hdab if service == "hdab" else node
    doc = await (await api.call("GET", "/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    registered = set()
    for route in _app(api).router.routes():
        if route.method in {"HEAD", "OPTIONS"}:
            continue
        assert route.resource is not None
        registered.add((route.method, openapi_path(route.resource.canonical)))
    assert documented == registered
    assert set(_app(api)[SPECS_KEY]) == {(m, p) for m, p in registered}
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, ops in doc["paths"].items():
        for name in re.findall(r"\{(\w+)\}", path):
            for op in ops.values():
                assert any(
                    p["name"] == name and p["in"] == "path" for p in op.get("parameters", [])
                ), (path, name)
        for method, op in ops.items():
            assert "default" in op["responses"]
            # a C2SP witness's add-checkpoint is public by the spec: the log's signature on the
            # checkpoint in the body is the authentication (RouteSpec.self_signed)
            if method != "get" and path != "/witness/add-checkpoint":
                assert op["security"] == [{"ehdsJws": []}], (path, method)
                assert "401" in op["responses"]


async def test_unknown_route_and_method_are_problems(hdab: Api, keys: Keys) -> None:
    await problem(await hdab.call("GET", "/nope"), 404, "NOT_FOUND")
    resp = await hdab.call("DELETE", "/register")
    await problem(resp, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in resp.headers["Allow"]


async def test_oversized_body_by_content_length(hdab: Api, keys: Keys) -> None:
    body = orjson.dumps(application_body(keys.user, keys.person) | {"pad": "x" * 8000})
    await problem(
        await hdab.call("POST", "/applications", key=keys.user, raw=body), 413, "BODY_TOO_LARGE"
    )


async def test_oversized_chunked_body(hdab: Api, keys: Keys) -> None:
    from gateway.http.auth import sign_request

    body = b'{"pad": "' + b"x" * 9000 + b'"}'

    async def chunks() -> Any:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    header = sign_request(
        keys.user, method="POST", path="/applications", body=body, audience="hdab-test"
    )
    resp = await hdab.client.post(
        "/applications",
        data=chunks(),
        headers={"Authorization": header, "Content-Type": "application/json"},
    )
    await problem(resp, 413, "BODY_TOO_LARGE")


async def test_wrong_content_type_is_415(hdab: Api, keys: Keys) -> None:
    resp = await hdab.call(
        "POST",
        "/applications",
        key=keys.user,
        raw=b"a=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await problem(resp, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_get_with_body_is_refused(hdab: Api) -> None:
    resp = await hdab.call(
        "GET", "/register", raw=b"{}", headers={"Content-Type": "application/json"}
    )
    await problem(resp, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_request_id_is_always_made_by_the_server(hdab: Api) -> None:
    resp = await hdab.call("GET", "/health", headers={"X-Request-Id": "patient-jane-doe-1970"})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-Id"])


async def test_metrics_are_prometheus_text(hdab: Api, keys: Keys) -> None:
    await hdab.call("GET", "/nope")
    await hdab.call("POST", "/applications", json={})
    resp = await hdab.call("GET", "/metrics")
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? -?[0-9.e+-]+", line), line
    assert 'ehds_http_problems_total{code="AUTH_MISSING"} 1' in text
    assert 'route="unmatched"' in text
    assert "ehds_audit_log_size" in text


async def test_access_log_is_json_without_personal_data(
    hdab: Api, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ehds.access")
    body = application_body(keys.user, keys.person)
    resp = await hdab.call("POST", "/applications", key=keys.user, json=body)
    app_id = (await resp.json())["id"]
    await hdab.call("GET", f"/applications/{app_id}?secret=query", key=keys.user)
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "ehds.access"]
    assert lines, "no access log"
    text = orjson.dumps(lines).decode()
    for forbidden in (app_id, "secret", "Example Research Institute", "127.0.0.1", "person-7f3a"):
        assert forbidden not in text
    assert {"method", "route", "status", "ms", "request_id", "kid"} <= set(lines[-1])
    assert lines[-1]["route"] == "/applications/{id}"


async def test_responses_match_their_documented_schemas(hdab: Api, keys: Keys) -> None:
    from jsonschema import Draft202012Validator

    await hdab.call(
        "POST", "/applications", key=keys.user, json=application_body(keys.user, keys.person)
    )
    doc = await (await hdab.call("GET", "/openapi.json")).json()
    problem_schema = doc["components"]["schemas"]["Problem"]
    for path, template in [
        ("/health", "/health"),
        ("/register", "/register"),
        ("/.well-known/jwks.json", "/.well-known/jwks.json"),
        ("/status-list", "/status-list"),
        ("/audit/checkpoint", "/audit/checkpoint"),
        ("/audit/entries", "/audit/entries"),
        ("/audit/entries/0", "/audit/entries/{index}"),
        ("/audit/proof/inclusion?index=0", "/audit/proof/inclusion"),
        ("/audit/proof/consistency?first=1", "/audit/proof/consistency"),
    ]:
        resp = await hdab.call("GET", path)
        assert resp.status == 200, path
        schema = doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ]
        Draft202012Validator(schema).validate(await resp.json())
    for path in ("/nope", "/audit/entries/999", "/permits/x"):
        Draft202012Validator(problem_schema).validate(
            await (await hdab.call("GET", path)).json(content_type=None)
        )
