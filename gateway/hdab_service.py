"""The HDAB service: ``create_hdab_app(config) -> web.Application``.

A thin HTTP layer over :class:`permits.hdab.HdabService`: parse and check the
request, call one domain method on the database thread, shape the answer.
Every decision is an audit event written by the domain service through the
metered sink, inside its transaction. Staff routes need a request signed by
an ``hdab_staff`` key; applicants (``data_user``) may only apply in the name
of their own organisation. The register (Art. 57), JWKS and the signed status
list are public.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from gateway.audit_wiring import AuditComponents, metered
from gateway.client_keys import KeyRing
from gateway.config import GatewayConfig
from gateway.errors import ForbiddenError, NotFoundError, UnavailableError, ValidationError
from gateway.http.app import (
    CONFIG_KEY,
    LOG_TAIL_KEY,
    add_ready_check,
    base_app,
    finish,
    warm_audit_cache,
)
from gateway.http.audit_routes import AUDIT_VIEW_KEY, audit_routes
from gateway.http.auth import PRINCIPAL_KEY, Principal
from gateway.http.metrics import Metrics
from gateway.http.middleware import METRICS_KEY
from gateway.http.routing import (
    BODY_KEY,
    Param,
    RouteSpec,
    field_str,
    install,
    json_body,
    json_response,
    signed,
)
from gateway.http.witness_routes import service_witness_routes
from gateway.service_keys import load_service_key
from permits.hdab import HdabService
from trust import parse_jws

LOG = logging.getLogger("ehds.hdab")
HDAB_KEY = web.AppKey("ehds_hdab", HdabService)
AUDIT_KEY = web.AppKey("ehds_audit", AuditComponents)

ID_PARAM = r"{id:[A-Za-z0-9._:@-]{1,128}}"
JTI_PARAM = r"{jti:[A-Za-z0-9._:@-]{1,128}}"
REASON_SCHEMA = {"type": "string", "pattern": "^[a-z0-9_.:-]{1,64}$"}
RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "approved", "refused", "issued"]},
        "application_hash": {"type": "string"},
        "reason": {"type": ["string", "null"]},
        "jti": {"type": ["string", "null"]},
    },
}
ISSUED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "jti": {"type": "string"},
        "version": {"type": "integer"},
        "token": {"type": "string", "description": "The signed permit (JWS)."},
        "permit_hash": {"type": "string"},
        "status_list_version": {"type": "integer"},
    },
}


def _hdab(request: web.Request) -> Any:
    return request.app[HDAB_KEY]


async def _db(request: web.Request, func: Any) -> Any:
    """Run one domain call on the audit/database thread (never on the event loop)."""
    return await request.app[AUDIT_KEY].view.run_sync(func)


def _record(rec: Any) -> dict[str, Any]:
    return {
        "id": rec.id,
        "status": rec.status,
        "application_hash": rec.application_hash,
        "reason": rec.reason,
        "jti": rec.jti,
    }


def _issued(p: Any) -> dict[str, Any]:
    return {
        "jti": p.jti,
        "version": p.version,
        "token": p.token,
        "permit_hash": p.permit_hash,
        "status_list_version": p.status_list_version,
    }


async def post_application(request: web.Request) -> web.Response:
    body = json_body(request)
    principal: Principal = request[PRINCIPAL_KEY]
    holder = body.get("holder_of_permit")
    holder_id = holder.get("id") if isinstance(holder, dict) else None
    if "hdab_staff" not in principal.roles and holder_id != principal.org:
        raise ForbiddenError(
            "applicants may only apply for their own organisation", code="APPLICANT_MISMATCH"
        )
    rec = await _db(request, lambda: _hdab(request).apply(body))
    return json_response(_record(rec), status=201, headers={"Location": f"/applications/{rec.id}"})


async def get_application(request: web.Request) -> web.Response:
    app_id = request.match_info["id"]
    rec = await _db(request, lambda: _hdab(request).application(app_id))
    return json_response(_record(rec))


async def post_decision(request: web.Request) -> web.Response:
    body = json_body(request)
    app_id = request.match_info["id"]
    decision = field_str(body, "decision")
    hdab = _hdab(request)
    if decision == "approve":
        rec = await _db(request, lambda: hdab.approve(app_id))
    elif decision == "refuse":
        reason = field_str(body, "reason")
        rec = await _db(request, lambda: hdab.refuse(app_id, reason))
    else:
        raise ValidationError("decision must be 'approve' or 'refuse'")
    return json_response(_record(rec))


async def post_issue(request: web.Request) -> web.Response:
    body = json_body(request) if request[BODY_KEY] else {}
    app_id = request.match_info["id"]
    nbf = body.get("nbf")
    if nbf is not None and (not isinstance(nbf, int) or isinstance(nbf, bool) or nbf < 0):
        raise ValidationError("nbf must be a NumericDate (integer seconds)")
    conditions = body.get("conditions", [])
    if not isinstance(conditions, list) or not all(isinstance(c, str) for c in conditions):
        raise ValidationError("conditions must be a list of strings")
    issued = await _db(
        request, lambda: _hdab(request).issue(app_id, nbf=nbf, conditions=conditions)
    )
    return json_response(
        _issued(issued), status=201, headers={"Location": f"/permits/{issued.jti}"}
    )


async def get_permit(request: web.Request) -> web.Response:
    jti = request.match_info["jti"]
    raw = request.query.get("version")
    version = None
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
            raise ValidationError("version must be a positive integer")
        version = int(raw)
    token = await _db(request, lambda: _hdab(request).permit_token(jti, version))
    principal: Principal = request[PRINCIPAL_KEY]
    if "hdab_staff" not in principal.roles:
        # Our own signed token, so its payload is trusted here; it names authorised
        # persons, so only the holder of the permit may fetch it.
        holder = orjson.loads(parse_jws(token).payload).get("holder_of_permit", {}).get("id")
        if holder != principal.org:
            raise NotFoundError(f"permit {jti} not found", code="HDAB_NOT_FOUND")
    return json_response({"jti": jti, "token": token})


async def post_amend(request: web.Request) -> web.Response:
    body = json_body(request)
    changes = body.get("changes")
    if not isinstance(changes, dict) or not changes:
        raise ValidationError("'changes' must be a non-empty object of top-level permit fields")
    jti = request.match_info["jti"]
    issued = await _db(request, lambda: _hdab(request).amend(jti, changes))
    return json_response(_issued(issued))


async def post_revoke(request: web.Request) -> web.Response:
    body = json_body(request)
    reason = field_str(body, "reason")
    jti = request.match_info["jti"]
    version = await _db(request, lambda: _hdab(request).revoke(jti, reason))
    return json_response({"jti": jti, "status": "revoked", "status_list_version": version})


async def get_register(request: web.Request) -> web.Response:
    register = await _db(request, lambda: _hdab(request).register())
    return json_response(register, headers={"Cache-Control": "public, max-age=5"})


async def get_jwks(request: web.Request) -> web.Response:
    return json_response(
        {"keys": request.app[JWKS_KEY]}, headers={"Cache-Control": "public, max-age=300"}
    )


async def get_status_list(request: web.Request) -> web.Response:
    token = await _db(request, lambda: _hdab(request).status_list())
    if token is None:
        raise NotFoundError("no status list published yet", code="STATUS_LIST_MISSING")
    return json_response({"token": token}, headers={"Cache-Control": "no-cache"})


JWKS_KEY = web.AppKey("ehds_jwks", list)


def hdab_routes() -> list[RouteSpec]:
    staff = signed("hdab_staff")
    not_found = {404: "Unknown application or permit (HDAB_NOT_FOUND)"}
    conflict = {409: "Not possible in the current state (HDAB_BAD_STATE)"}
    policy = {422: "Refused by the Regulation's rules or the permit model"}
    obj = {"type": "object"}
    return [
        RouteSpec(
            "POST",
            "/applications",
            post_application,
            "Apply for a data permit (Art. 67)",
            "permits",
            **signed("data_user", "hdab_staff"),
            request_schema={
                "type": "object",
                "description": "A PermitApplication (docs/permit.schema.json without jti/iss/iat/nbf/exp, plus duration_days).",
            },
            response_schema=RECORD_SCHEMA,
            status=201,
            responses={201: "Application recorded", **policy},
        ),
        RouteSpec(
            "GET",
            f"/applications/{ID_PARAM}",
            get_application,
            "Status of an application",
            "permits",
            **signed("data_user", "hdab_staff"),
            params=(Param("id", where="path"),),
            response_schema=RECORD_SCHEMA,
            responses=not_found,
        ),
        RouteSpec(
            "POST",
            f"/applications/{ID_PARAM}/decision",
            post_decision,
            "Approve or refuse (with reason)",
            "permits",
            **staff,
            params=(Param("id", where="path"),),
            request_schema={
                "type": "object",
                "required": ["decision"],
                "properties": {
                    "decision": {"enum": ["approve", "refuse"]},
                    "reason": REASON_SCHEMA,
                },
            },
            response_schema=RECORD_SCHEMA,
            responses={**not_found, **conflict, 422: "Bad decision"},
        ),
        RouteSpec(
            "POST",
            f"/applications/{ID_PARAM}/permit",
            post_issue,
            "Issue the signed permit",
            "permits",
            **staff,
            params=(Param("id", where="path"),),
            request_schema={
                "type": "object",
                "properties": {
                    "nbf": {"type": "integer"},
                    "conditions": {"type": "array", "items": {"type": "string"}},
                },
            },
            response_schema=ISSUED_SCHEMA,
            status=201,
            responses={201: "Permit issued", **not_found, **conflict, **policy},
        ),
        RouteSpec(
            "GET",
            f"/permits/{JTI_PARAM}",
            get_permit,
            "The signed permit (current or given version)",
            "permits",
            **signed("data_user", "hdab_staff"),
            params=(
                Param("jti", where="path"),
                Param("version", schema={"type": "integer", "minimum": 1}),
            ),
            response_schema={
                "type": "object",
                "properties": {"jti": {"type": "string"}, "token": {"type": "string"}},
            },
            responses=not_found,
        ),
        RouteSpec(
            "POST",
            f"/permits/{JTI_PARAM}/amend",
            post_amend,
            "Amend: sign version n+1 (Art. 68(13))",
            "permits",
            **staff,
            params=(Param("jti", where="path"),),
            request_schema={
                "type": "object",
                "required": ["changes"],
                "properties": {"changes": obj},
            },
            response_schema=ISSUED_SCHEMA,
            responses={**not_found, **conflict, **policy},
        ),
        RouteSpec(
            "POST",
            f"/permits/{JTI_PARAM}/revoke",
            post_revoke,
            "Revoke (Art. 63)",
            "permits",
            **staff,
            params=(Param("jti", where="path"),),
            request_schema={
                "type": "object",
                "required": ["reason"],
                "properties": {"reason": REASON_SCHEMA},
            },
            response_schema=obj,
            responses={**not_found, **conflict},
        ),
        RouteSpec(
            "GET",
            "/register",
            get_register,
            "Public register of permits and refusals (Art. 57)",
            "public",
            response_schema={
                "type": "object",
                "properties": {"permits": {"type": "array"}, "refusals": {"type": "array"}},
            },
        ),
        RouteSpec(
            "GET",
            "/.well-known/jwks.json",
            get_jwks,
            "The HDAB's public signing keys",
            "public",
            response_schema={"type": "object", "properties": {"keys": {"type": "array"}}},
        ),
        RouteSpec(
            "GET",
            "/status-list",
            get_status_list,
            "The newest signed status (revocation) list",
            "public",
            response_schema={"type": "object", "properties": {"token": {"type": "string"}}},
            responses={404: "Nothing published yet (STATUS_LIST_MISSING)"},
        ),
    ]


def create_hdab_app(
    config: GatewayConfig,
    *,
    keys: KeyRing | None = None,
    audit: AuditComponents | None = None,
    hdab: HdabService | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The HDAB service; components are built from ``config`` unless given (tests, the demo)."""
    from gateway.audit_backend import open_audit
    from trust import load_jwk, public_jwk

    if config.service != "hdab":
        raise ValueError("create_hdab_app needs a config loaded with service='hdab'")
    keys = keys if keys is not None else KeyRing.from_file(config.clients_file)
    app = base_app(config, keys=keys, metrics=metrics)
    m = app[METRICS_KEY]
    components, tail = metered(audit if audit is not None else open_audit(config), m)
    app[LOG_TAIL_KEY] = tail
    if hdab is None:
        signing_key = load_service_key(config, config.hdab_signing_key).jwk
        hdab = HdabService(
            _sqlalchemy_url(config.hdab_database),
            hdab_id=config.hdab.id,
            country=config.hdab.country,
            key=signing_key,
            sink=components.sink,
        )
    else:
        hdab.sink = components.sink
    app[HDAB_KEY] = hdab
    app[AUDIT_KEY] = components
    app[AUDIT_VIEW_KEY] = components.view
    jwks = [public_jwk(hdab.key)]
    for item in components.public_keys:  # the audit key, when it differs from the permit key
        entry = public_jwk(load_jwk(item))
        if entry["kid"] not in {j["kid"] for j in jwks}:
            jwks.append(entry)
    app[JWKS_KEY] = jwks
    install(app, hdab_routes() + audit_routes() + service_witness_routes(app, components))

    async def audit_ready() -> None:
        await components.view.checkpoint()

    async def store_ready() -> None:
        if await components.view.run_sync(hdab.status_list) is None:
            raise UnavailableError("no status list published", code="STATUS_LIST_MISSING")

    add_ready_check(app, "audit_log", audit_ready)
    add_ready_check(app, "permit_store", store_ready)
    app.cleanup_ctx.append(_lifecycle)
    app.cleanup_ctx.append(warm_audit_cache)
    return finish(app)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Publish a status list at start if none exists; close the databases at shutdown."""
    hdab = app[HDAB_KEY]
    components = app[AUDIT_KEY]
    if await components.view.run_sync(hdab.status_list) is None:
        await components.view.run_sync(hdab.publish_status_list)
    refresher = asyncio.get_running_loop().create_task(
        _refresh_status_list(app, app[CONFIG_KEY].hdab.status_list_refresh_seconds)
    )
    yield
    refresher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await refresher
    with contextlib.suppress(Exception):
        await asyncio.get_running_loop().run_in_executor(None, components.close)
    engine = getattr(hdab, "engine", None)
    if engine is not None:
        engine.dispose()


async def _refresh_status_list(app: web.Application, every: float) -> None:
    """Publish a fresh signed status list on a timer; a failure is logged and retried."""
    hdab = app[HDAB_KEY]
    view = app[AUDIT_KEY].view
    while True:
        await asyncio.sleep(every)
        try:
            version = await view.run_sync(hdab.publish_status_list)
            LOG.info(orjson.dumps({"event": "statuslist.refreshed", "version": version}).decode())
        except Exception as exc:  # keep trying: data holders fail closed meanwhile
            LOG.error(
                orjson.dumps(
                    {"event": "statuslist.refresh_failed", "error": type(exc).__name__}
                ).decode()
            )


def _sqlalchemy_url(value: str) -> str:
    """A bare path means SQLite at that path (created with its folder)."""
    if "://" in value:
        return value
    from pathlib import Path

    path = Path(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


__all__ = ["create_hdab_app", "hdab_routes"]
