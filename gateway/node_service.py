"""The hospital gateway: ``create_node_app(config) -> web.Application``.

Runs next to the hospital's FHIR server. It answers with counts and status
only: health and readiness, the FHIR source's status, feature-spec dry runs
(aggregate counts, each at or above the disclosure floor or withheld), its
own audit log (checkpoint and proofs public; entries and the FHIR AuditEvent
view need a signed request, because entries carry the site's counts), and
the Flower SuperNode it runs or connects to. Every dry run is itself an
audit event (``data.extracted``), written before the answer is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from gateway.audit_wiring import AuditComponents, metered
from gateway.client_keys import KeyRing
from gateway.config import GatewayConfig
from gateway.errors import UnavailableError, ValidationError
from gateway.fhir_sync import before_job, install_fhir_sync
from gateway.http.app import LOG_TAIL_KEY, add_ready_check, base_app, finish, warm_audit_cache
from gateway.http.audit_routes import AUDIT_VIEW_KEY, audit_routes
from gateway.http.metrics import Metrics
from gateway.http.middleware import METRICS_KEY
from gateway.http.routing import (
    REQUEST_ID_KEY,
    Param,
    RouteSpec,
    install,
    json_body,
    json_response,
    query_int,
    signed,
)
from gateway.http.witness_routes import service_witness_routes
from gateway.node_data import NodeData
from gateway.supernode import SuperNode

NODE_DATA_KEY = web.AppKey("ehds_node_data", NodeData)
NODE_AUDIT_KEY = web.AppKey("ehds_node_audit", AuditComponents)
SUPERNODE_KEY = web.AppKey("ehds_supernode", SuperNode)
EXECUTOR_KEY = web.AppKey("ehds_node_executor", ThreadPoolExecutor)
DRY_RUN_SLOTS_KEY = web.AppKey("ehds_dry_run_slots", asyncio.Semaphore)
MAX_DRY_RUNS = 2  # one running, one waiting
MAX_AUDIT_EVENTS = 500
FHIR_JSON = "application/fhir+json"

DRY_RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec_hash": {"type": "string"},
        "disclosure_floor": {"type": "integer"},
        "patients": {"type": "integer"},
        "excluded_opt_out": {"type": ["integer", "null"]},
        "quarantined": {"type": ["integer", "null"]},
        "features": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "present": {"type": ["integer", "null"]},
                    "missing": {"type": ["integer", "null"]},
                },
            },
        },
        "label": {"type": "object"},
        "withheld": {"type": "array", "items": {"type": "string"}},
    },
}


async def get_fhir_status(request: web.Request) -> web.Response:
    return json_response(await request.app[NODE_DATA_KEY].status())


async def post_dry_run(request: web.Request) -> web.Response:
    body = json_body(request)
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise ValidationError("'spec' must be a feature specification object")
    app = request.app
    data = app[NODE_DATA_KEY]
    slots = app[DRY_RUN_SLOTS_KEY]
    if slots.locked():
        # A full pass over the hospital's data each: queueing more would only let
        # one client starve the gateway. Refuse early; nothing was read or written.
        raise UnavailableError("dry runs are busy; retry shortly", code="DRY_RUN_BUSY")
    async with slots:
        await before_job(app)  # search/export sources: pull changes first (gateway.fhir_sync)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(app[EXECUTOR_KEY], lambda: data.dry_run(spec))
    components = app[NODE_AUDIT_KEY]
    details = {
        "spec_hash": result["spec_hash"],
        "patients": result["patients"],
        "rows": result["patients"],
        "features": len(result["features"]),
    }
    site = app[_CONFIG].node.site
    await components.view.run_sync(
        lambda: components.sink.record(
            "data.extracted",
            subject={"site": site, "request": request[REQUEST_ID_KEY]},
            details=details,
        )
    )
    return json_response(result)


async def get_audit_events(request: web.Request) -> web.Response:
    """The audit log as a FHIR R4 searchset Bundle of AuditEvent resources."""
    components = request.app[NODE_AUDIT_KEY]
    export = components.to_fhir
    if export is None:
        raise UnavailableError(
            "FHIR AuditEvent export is not configured", code="AUDIT_EXPORT_UNAVAILABLE"
        )
    view = components.view
    size = await view.tree_size()
    count = query_int(request, "_count", default=50, minimum=1, maximum=MAX_AUDIT_EVENTS)
    offset = query_int(request, "_offset", default=0)
    end = min(size, offset + count)
    entries = await view.entries(offset, end) if offset < end else []
    # pure CPU (fhir.resources validation): off the loop, but not on the audit DB thread
    resources = await asyncio.get_running_loop().run_in_executor(None, export, entries)
    base = "/fhir/AuditEvent"
    origin = f"{request.scheme}://{request.host}"
    links = [{"relation": "self", "url": f"{base}?_count={count}&_offset={offset}"}]
    if end < size:
        links.append({"relation": "next", "url": f"{base}?_count={count}&_offset={end}"})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": size,
        "link": links,
        "entry": [
            {"fullUrl": f"{origin}{base}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }
    response = json_response(bundle)
    response.content_type = FHIR_JSON
    return response


async def get_flower_status(request: web.Request) -> web.Response:
    return json_response(await request.app[SUPERNODE_KEY].status())


_CONFIG = web.AppKey("ehds_node_config", GatewayConfig)


def node_routes(dry_run_roles: tuple[str, ...] = ("operator",)) -> list[RouteSpec]:
    readers = signed("operator", "auditor")
    return [
        RouteSpec(
            "GET",
            "/fhir/status",
            get_fhir_status,
            "Status of the configured FHIR source",
            "node",
            **signed("operator", "auditor", "data_user"),
            response_schema={
                "type": "object",
                "properties": {
                    "kind": {"type": "string"},
                    "configured": {"type": "boolean"},
                    "reachable": {"type": "boolean"},
                    "files": {"type": "integer"},
                    "capability": {"type": "object"},
                },
            },
        ),
        RouteSpec(
            "POST",
            "/features/dry-run",
            post_dry_run,
            "Run a feature spec locally; aggregate counts only, each >= the disclosure floor",
            "node",
            **signed(*dry_run_roles),
            request_schema={
                "type": "object",
                "required": ["spec"],
                "properties": {"spec": {"type": "object"}},
            },
            response_schema=DRY_RUN_SCHEMA,
            responses={
                422: "Invalid spec or cohort below the disclosure floor (BELOW_DISCLOSURE_FLOOR)",
                503: "FHIR source unavailable, or dry runs busy (DRY_RUN_BUSY)",
            },
        ),
        RouteSpec(
            "GET",
            "/fhir/AuditEvent",
            get_audit_events,
            "Audit entries as FHIR AuditEvent (searchset)",
            "audit",
            **readers,
            response_type=FHIR_JSON,
            params=(
                Param(
                    "_count", schema={"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_EVENTS}
                ),
                Param("_offset", schema={"type": "integer", "minimum": 0}),
            ),
            response_schema={
                "type": "object",
                "properties": {"resourceType": {"const": "Bundle"}, "type": {"const": "searchset"}},
            },
        ),
        RouteSpec(
            "GET",
            "/flower/status",
            get_flower_status,
            "The Flower SuperNode this gateway runs or uses",
            "node",
            **readers,
            response_schema={"type": "object"},
        ),
    ]


def create_node_app(
    config: GatewayConfig,
    *,
    keys: KeyRing | None = None,
    audit: AuditComponents | None = None,
    data: NodeData | None = None,
    supernode: SuperNode | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The hospital gateway; components are built from ``config`` unless given."""
    from gateway.audit_backend import open_audit

    if config.service != "node":
        raise ValueError("create_node_app needs a config loaded with service='node'")
    keys = keys if keys is not None else KeyRing.from_file(config.clients_file)
    app = base_app(config, keys=keys, metrics=metrics)
    components, tail = metered(audit if audit is not None else open_audit(config), app[METRICS_KEY])
    app[LOG_TAIL_KEY] = tail
    app[_CONFIG] = config
    app[NODE_AUDIT_KEY] = components
    app[AUDIT_VIEW_KEY] = components.view
    app[NODE_DATA_KEY] = data if data is not None else NodeData(config.node)
    app[SUPERNODE_KEY] = (
        supernode
        if supernode is not None
        else SuperNode(
            config.node.flower,
            stop_timeout=config.server.shutdown_timeout,
            runtime_dir=config.data_dir / "supernode",
        )
    )
    app[EXECUTOR_KEY] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ehds-dryrun")
    app[DRY_RUN_SLOTS_KEY] = asyncio.Semaphore(MAX_DRY_RUNS)
    entry_readers = frozenset({"operator", "auditor"})
    install(
        app,
        node_routes(config.node.dry_run_roles)
        + audit_routes(entries_roles=entry_readers)
        + service_witness_routes(app, components),
    )

    async def audit_ready() -> None:
        await components.view.checkpoint()

    add_ready_check(app, "audit_log", audit_ready)
    add_ready_check(app, "fhir_source", app[NODE_DATA_KEY].check_ready)
    add_ready_check(app, "supernode", app[SUPERNODE_KEY].check_ready)
    install_fhir_sync(app, config, app[NODE_DATA_KEY])
    app.cleanup_ctx.append(_lifecycle)
    app.cleanup_ctx.append(warm_audit_cache)
    return finish(app)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    supernode = app[SUPERNODE_KEY]
    await supernode.start()
    yield
    await supernode.stop()
    app[EXECUTOR_KEY].shutdown(wait=False, cancel_futures=True)
    with contextlib.suppress(Exception):
        await asyncio.get_running_loop().run_in_executor(None, app[NODE_AUDIT_KEY].close)


__all__ = ["create_node_app", "node_routes"]
