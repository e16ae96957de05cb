"""What both services share: middlewares, health, readiness, metrics, OpenAPI.

:func:`base_app` returns an application with the common routes installed;
each service then adds its own :class:`RouteSpec` list and readiness checks.
Readiness runs the checks (audit log reachable, FHIR source readable, ...)
and answers 503 with the failing check's name while any fails, so a load
balancer never routes to a gateway that would fail closed anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.audit_wiring import LogTail
from gateway.client_keys import KeyRing
from gateway.config import GatewayConfig
from gateway.http.audit_routes import AUDIT_VIEW_KEY
from gateway.http.auth import RequestVerifier
from gateway.http.metrics import CONTENT_TYPE, Metrics
from gateway.http.middleware import (
    MAX_BODY_KEY,
    METRICS_KEY,
    SERVICE_KEY,
    VERIFIER_KEY,
    guard,
    observe,
)
from gateway.http.openapi import build_openapi
from gateway.http.routing import SPECS_KEY, RouteSpec, install, json_response

#: A check raises when not ready; it may return a mapping of details (shown with "ok").
ReadyCheck = Callable[[], Awaitable[object]]
CONFIG_KEY = web.AppKey("ehds_config", GatewayConfig)
READY_KEY = web.AppKey("ehds_ready_checks", dict)
OPENAPI_KEY = web.AppKey("ehds_openapi", dict)
LOG_TAIL_KEY = web.AppKey("ehds_log_tail", LogTail)

DESCRIPTIONS = {
    "hdab": "Health data access body: permit applications, decisions, signed permits, the public "
    "register (Art. 57), JWKS, the signed status list and its Merkle audit log.",
    "node": "Hospital gateway (data holder): FHIR source status, feature-spec dry runs with "
    "aggregate counts only, its Merkle audit log (also as FHIR AuditEvent) and its Flower SuperNode.",
}

HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string"},
        "service": {"type": "string"},
        "org": {"type": "string", "description": "Audience to sign requests for."},
        "version": {"type": "string"},
    },
}


def base_app(
    config: GatewayConfig, *, keys: KeyRing, metrics: Metrics | None = None
) -> web.Application:
    app = web.Application(
        middlewares=[observe, guard], client_max_size=config.server.max_body_bytes
    )
    app[CONFIG_KEY] = config
    app[SERVICE_KEY] = config.service
    app[MAX_BODY_KEY] = config.server.max_body_bytes
    app[METRICS_KEY] = metrics or Metrics(config.service)
    app[VERIFIER_KEY] = RequestVerifier(
        keys,
        audience=config.org,
        skew_seconds=config.auth.clock_skew_seconds,
        replay_cache_size=config.auth.replay_cache_size,
    )
    app[READY_KEY] = {}
    app[SPECS_KEY] = {}
    install(app, common_routes())
    return app


def add_ready_check(app: web.Application, name: str, check: ReadyCheck) -> None:
    app[READY_KEY][name] = check


def finish(app: web.Application) -> web.Application:
    """Freeze the OpenAPI document once every route is installed."""
    config = app[CONFIG_KEY]
    app[OPENAPI_KEY] = build_openapi(
        app[SPECS_KEY].values(),
        title=f"EHDS Gateway - {config.service} service",
        version=__version__,
        description=DESCRIPTIONS.get(config.service, ""),
    )
    return app


async def health(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY]
    return json_response(
        {"status": "ok", "service": config.service, "org": config.org, "version": __version__}
    )


async def ready(request: web.Request) -> web.Response:
    results: dict[str, object] = {}
    failed = False
    for name, check in request.app[READY_KEY].items():
        try:
            detail = await asyncio.wait_for(check(), timeout=5.0)
            results[name] = {"status": "ok", **detail} if isinstance(detail, Mapping) else "ok"
        except Exception as exc:
            failed = True
            code = getattr(exc, "code", None)
            results[name] = code if isinstance(code, str) else "unavailable"
    if failed:
        return json_response({"status": "unavailable", "checks": results}, status=503)
    return json_response({"status": "ready", "checks": results})


async def metrics(request: web.Request) -> web.Response:
    tail = request.app.get(LOG_TAIL_KEY)
    if tail is not None:
        with contextlib.suppress(Exception):  # a scrape must not fail on a busy database
            await tail.catch_up()
    text = request.app[METRICS_KEY].render()
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])


async def warm_audit_cache(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: preload proof hashes in the background; cancelled at shutdown."""
    view = app.get(AUDIT_VIEW_KEY)
    task = None
    if view is not None:
        task = asyncio.get_running_loop().create_task(view.warm())  # type: ignore[attr-defined]
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def common_routes() -> list[RouteSpec]:
    return [
        RouteSpec(
            "GET",
            "/health",
            health,
            "Liveness and the service identity (audience for signing)",
            "service",
            response_schema=HEALTH_SCHEMA,
        ),
        RouteSpec(
            "GET",
            "/ready",
            ready,
            "Readiness: every dependency check passes",
            "service",
            response_schema={"type": "object"},
            responses={503: "A dependency is unavailable"},
        ),
        RouteSpec(
            "GET",
            "/metrics",
            metrics,
            "Prometheus metrics (text format 0.0.4)",
            "service",
            response_type="text/plain",
            response_schema={"type": "string"},
        ),
        RouteSpec(
            "GET",
            "/openapi.json",
            openapi,
            "This OpenAPI 3.1 document",
            "service",
            response_schema={"type": "object"},
        ),
    ]


__all__ = [
    "CONFIG_KEY",
    "LOG_TAIL_KEY",
    "READY_KEY",
    "add_ready_check",
    "base_app",
    "common_routes",
    "finish",
    "warm_audit_cache",
]
