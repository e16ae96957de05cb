"""Permit checks at the hospital gateway: status lists kept current, one guard, its routes.

The gateway holds the same state the site's ClientApp guard uses (trust list,
``<data_dir>/status_lists/<hdab>.jws``, ``<data_dir>/guard.sqlite`` with rounds,
nonces and the status-list version floor), so a list the gateway accepted is
the list training is checked against, and a restart with an older list is
refused in both places.

Routes:

* ``POST /status-lists`` - an HDAB pushes its newest signed list (request signed
  by a key with role ``hdab_staff``; the list itself must verify too),
* ``GET /status-lists`` - version, age and poll state per HDAB (operators, auditors),
* ``POST /permits/check`` - the site's ``PermitGuard`` decides one signed access
  request (the same decision the ClientApp takes before reading data); allowed
  is 200, refused is 403 with the reason's code. Either way it is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.audit_wiring import AuditComponents
from gateway.config import GatewayConfig
from gateway.errors import ForbiddenError, UnavailableError, ValidationError
from gateway.http.app import add_ready_check
from gateway.http.metrics import Metrics
from gateway.http.refusals import AUDITED_KEY
from gateway.http.routing import RouteSpec, field_str, install, json_body, json_response, signed
from gateway.key_sync import KeySync
from gateway.status_sync import SYNC_KEY, StatusSync, register_metrics, sync_lifecycle
from permits import TrustList
from permits.errors import VerificationError
from permits.guard import AccessRequest, PermitGuard
from permits.reasons import ReasonCode
from permits.request import AccessParams
from permits.statuslist import StatusListStore
from permits.verify import PermitVerifier
from trust import parse_jws

PERMITS_KEY = web.AppKey("ehds_node_permits", object)


@dataclass
class NodePermits:
    sync: StatusSync | None
    guard: PermitGuard | None
    audit: AuditComponents


def trust_list_path(config: GatewayConfig) -> Path | None:
    configured = config.node.permits.trust_list
    if configured is not None:
        return configured
    default = config.data_dir / "trust_list.json"
    return default if default.exists() else None


def build_node_permits(config: GatewayConfig, audit: AuditComponents) -> NodePermits:
    """Guard and sync from the config; without a trust list every check is refused."""
    from federation.state import SqliteGuardState

    path = trust_list_path(config)
    if path is None:
        return NodePermits(None, None, audit)
    settings = config.node.permits
    pinned_path = config.data_dir / "trust_list.pinned.json"
    # the configured list is the anchor; keys pinned since (rotations) survive a restart
    trust = TrustList.from_file(pinned_path if pinned_path.exists() else path)
    state = SqliteGuardState(config.data_dir / "guard.sqlite")
    store = StatusListStore(trust, max_age=settings.max_age_seconds, floor=state)
    issuers = dict(item.split("=", 1) for item in settings.issuers)
    sync = StatusSync(
        store, config.data_dir / "status_lists", issuers, poll_seconds=settings.poll_seconds
    )
    guard = PermitGuard(
        config.node.site,
        PermitVerifier(trust),
        store,
        audit.sink,
        replay=state,
        ledger=state,
    )
    keys = KeySync(trust, issuers, pinned_path)

    def use_keys(merged: TrustList) -> None:  # the guard verifies with the pinned keys
        guard.verifier.trust = merged
        store.trust = merged

    keys.on_change.append(use_keys)
    sync.keys = keys
    sync.load_folder()
    return NodePermits(sync, guard, audit)


KEY_REFRESH_SECONDS = 5.0  # a flood of unknown kids cannot make us hammer the HDAB


def unknown_signers(token: str, trust_list: TrustList) -> bool:
    """True when the permit names a signing kid not pinned yet (unverified peek, no decision)."""
    try:
        parsed = parse_jws(token)
    except Exception:
        return False  # malformed: the guard refuses it with its own reason
    return any(trust_list.get(s.kid or "") is None for s in parsed.signatures)


def _permits(request: web.Request) -> NodePermits:
    value = request.app[PERMITS_KEY]
    assert isinstance(value, NodePermits)
    if value.sync is None or value.guard is None:
        raise UnavailableError(
            "no trust list configured ([node.permits] trust_list)", code="PERMITS_NOT_CONFIGURED"
        )
    return value


async def post_status_list(request: web.Request) -> web.Response:
    permits = _permits(request)
    assert permits.sync is not None
    token = field_str(json_body(request), "token")
    sync = permits.sync
    try:
        status = await permits.audit.view.run_sync(lambda: sync.accept(token))
    except VerificationError as exc:  # a key not pinned yet (e.g. a new status key): fetch
        if exc.reason is not ReasonCode.KID_UNKNOWN:
            raise
        await sync.refresh_keys()
        status = await permits.audit.view.run_sync(lambda: sync.accept(token))
    issuer = sync.state.get(status.iss)
    if issuer is not None:
        issuer.pushes += 1
    return json_response({"hdab": status.iss, "version": status.version})


async def get_status_lists(request: web.Request) -> web.Response:
    permits = _permits(request)
    assert permits.sync is not None
    return json_response({"lists": permits.sync.snapshot()})


async def post_check(request: web.Request) -> web.Response:
    permits = _permits(request)
    guard = permits.guard
    assert guard is not None
    body = json_body(request)
    operation = field_str(body, "operation")
    if operation not in ("train", "evaluate"):
        raise ValidationError("operation must be train or evaluate")
    raw_params = body.get("params")
    if not isinstance(raw_params, dict):
        raise ValidationError("'params' must be an object")
    try:
        params = AccessParams.model_validate(raw_params)
    except ValueError:
        raise ValidationError("'params' are not valid access parameters") from None
    access = AccessRequest(
        permit=field_str(body, "permit"),
        proof=field_str(body, "proof"),
        operation=operation,  # type: ignore[arg-type]
        params=params,
    )
    assert permits.sync is not None
    if unknown_signers(access.permit, guard.verifier.trust):  # a rotation we have not seen
        await permits.sync.refresh_keys(min_interval=KEY_REFRESH_SECONDS)
    permits.sync.check_refused()  # an old list put back at restart: refused, with its reason
    decision = await permits.audit.view.run_sync(lambda: guard.decide(access))
    if not decision.allowed:  # already in the audit log, written by the guard
        request[AUDITED_KEY] = True
        code = decision.reason.value.upper()
        raise ForbiddenError(
            f"permit guard refused: {decision.reason.value}",
            code=code if code.startswith("PERMIT_") else f"PERMIT_{code}",
        )
    return json_response(
        {
            "allowed": True,
            "reason": decision.reason.value,
            "permit": decision.jti,
            "rounds_used": decision.rounds_used,
            "rounds_remaining": decision.rounds_remaining,
        }
    )


def node_permit_routes() -> list[RouteSpec]:
    obj: dict[str, Any] = {"type": "object"}
    return [
        RouteSpec(
            "POST",
            "/status-lists",
            post_status_list,
            "An HDAB pushes its newest signed status list",
            "permits",
            **signed("hdab_staff"),
            request_schema={
                "type": "object",
                "required": ["token"],
                "properties": {"token": {"type": "string"}},
            },
            response_schema=obj,
            responses={
                403: "Refused list (PERMIT_STATUS_LIST_ROLLBACK, PERMIT_KID_UNKNOWN, ...)",
                503: "No trust list configured (PERMITS_NOT_CONFIGURED)",
            },
        ),
        RouteSpec(
            "GET",
            "/status-lists",
            get_status_lists,
            "Version, age and poll state of every HDAB's status list",
            "permits",
            **signed("operator", "auditor"),
            response_schema=obj,
        ),
        RouteSpec(
            "POST",
            "/permits/check",
            post_check,
            "The site's PermitGuard decides one signed access request (audited)",
            "permits",
            **signed("data_user", "operator"),
            request_schema={
                "type": "object",
                "required": ["permit", "proof", "operation", "params"],
                "properties": {
                    "permit": {"type": "string"},
                    "proof": {"type": "string"},
                    "operation": {"enum": ["train", "evaluate"]},
                    "params": obj,
                },
            },
            response_schema=obj,
            responses={403: "Refused by the guard; code = the reason (e.g. PERMIT_REVOKED)"},
        ),
    ]


def install_node_permits(
    app: web.Application, config: GatewayConfig, audit: AuditComponents, metrics: Metrics
) -> None:
    """Routes, readiness (each configured HDAB's list held and fresh), metrics, polling."""
    permits = build_node_permits(config, audit)
    app[PERMITS_KEY] = permits
    install(app, node_permit_routes())
    sync = permits.sync
    if sync is None:
        return
    app[SYNC_KEY] = sync
    register_metrics(metrics, sync)

    async def lists_ready() -> None:
        sync.check()

    add_ready_check(app, "status_lists", lists_ready)
    app.cleanup_ctx.append(sync_lifecycle)


__all__ = ["NodePermits", "build_node_permits", "install_node_permits", "node_permit_routes"]
