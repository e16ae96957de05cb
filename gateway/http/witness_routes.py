"""The C2SP tlog-witness HTTP interface every organisation's service exposes.

* ``POST /witness/add-checkpoint`` -- the spec's call: text body (old size,
  consistency proof, checkpoint note), answered with ``cosignature/v1`` lines.
  Public like the spec says: the checkpoint's log signature is the
  authentication. Status codes are the spec's; a 409 carries the size the
  witness holds as ``text/x.tlog.size``; other refusals are problem+json with
  a stable ``code``. A refusal of a validly signed checkpoint (409/422) is
  evidence of log misbehaviour and is written to this organisation's own audit
  log (``witness.refused``); every refusal is counted by status in the request metrics.
* ``GET /witness/checkpoint?origin=`` -- the newest checkpoint this witness
  cosigned for a log, with the log's signature and the cosignature: what a
  verifier needs even if the log's operator deleted everything.
* ``GET /witness`` -- the witness's name, verifier key (vkey) and known logs.

The witness itself (:class:`audit_chain.witness.Witness`) is pure logic over
the service's audit database; the handlers run it on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from audit_chain.errors import AuditError, AuditWitnessError
from audit_chain.witness import SIZE_CONTENT_TYPE, Witness
from gateway.errors import GatewayError, NotFoundError
from gateway.http.routing import BODY_KEY, Param, RouteSpec, json_response

WITNESS_KEY = web.AppKey("ehds_witness", Witness)
WITNESS_AUDIT_KEY = web.AppKey("ehds_witness_audit", object)
LOG = logging.getLogger("ehds.witness")


class AuditSink(Protocol):
    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None: ...


async def add_checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS_KEY]
    body: bytes = request.get(BODY_KEY, b"")
    try:
        line = await asyncio.to_thread(witness.add_checkpoint, body)
    except AuditWitnessError as exc:
        if exc.status in (409, 422):
            await asyncio.to_thread(_audit_refusal, request, body, exc)
        if exc.status == 409 and exc.known_size is not None:
            return web.Response(
                status=409,
                text=f"{exc.known_size}\n",
                content_type=SIZE_CONTENT_TYPE,
                headers={"X-Ehds-Code": exc.code},
            )
        raise GatewayError(str(exc), code=exc.code, status=exc.status) from exc
    except AuditError as exc:  # storage trouble: fail closed, never cosign
        raise GatewayError(str(exc), code=exc.code, status=503) from exc
    return web.Response(text=line, content_type="text/plain", charset="utf-8")


def _audit_refusal(request: web.Request, body: bytes, exc: AuditWitnessError) -> None:
    sink: AuditSink | None = request.app.get(WITNESS_AUDIT_KEY)  # type: ignore[assignment]
    if sink is None:
        return
    from audit_chain.note import parse_checkpoint_body, parse_note
    from audit_chain.witness import parse_add_checkpoint

    try:
        origin, size, _ = parse_checkpoint_body(parse_note(parse_add_checkpoint(body).note).text)
        sink.record(
            "witness.refused",
            subject={"log": origin},
            details={
                "reason": exc.code.lower(),
                "checkpoint_size": size,
                "known_size": exc.known_size or 0,
            },
        )
    except AuditError:
        LOG.warning("could not audit a witness refusal (%s)", exc.code)


async def get_checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS_KEY]
    origin = request.query.get("origin", "")
    note = await asyncio.to_thread(witness.latest, origin) if origin else None
    if note is None:
        raise NotFoundError(
            "this witness cosigned nothing for that log", code="WITNESS_UNKNOWN_LOG"
        )
    return web.Response(text=note, content_type="text/plain", charset="utf-8")


async def get_witness(request: web.Request) -> web.Response:
    return json_response(witness_info(request.app[WITNESS_KEY]))


def witness_routes() -> list[RouteSpec]:
    tag = "witness"
    return [
        RouteSpec(
            "POST",
            "/witness/add-checkpoint",
            add_checkpoint,
            "C2SP tlog-witness add-checkpoint: cosign a checkpoint that extends the last one seen",
            tag,
            self_signed=True,
            body_type=None,
            response_type="text/plain",
            responses={
                400: "Malformed request, or old size above the checkpoint size",
                403: "No valid signature by a known key of the log",
                404: "Unknown log origin",
                409: "Old size is not the size this witness holds (body: that size, "
                "text/x.tlog.size), or the same size with another root",
                422: "The consistency proof does not verify",
            },
        ),
        RouteSpec(
            "GET",
            "/witness/checkpoint",
            get_checkpoint,
            "Newest checkpoint this witness cosigned for a log (signed note with cosignature)",
            tag,
            params=(Param("origin", required=True),),
            response_type="text/plain",
            responses={404: "Nothing cosigned for that log"},
        ),
        RouteSpec(
            "GET",
            "/witness",
            get_witness,
            "The witness's name, verifier key and known logs",
            tag,
            response_schema={
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "vkey": {"type": "string"},
                    "logs": {"type": "array", "items": {"type": "string"}},
                },
            },
        ),
    ]


def install_witness(
    app: web.Application, witness: Witness, audit: AuditSink | None = None
) -> list[RouteSpec]:
    """Put ``witness`` on ``app``; returns the routes to ``install`` with the service's own."""
    app[WITNESS_KEY] = witness
    if audit is not None:
        app[WITNESS_AUDIT_KEY] = audit
    return witness_routes()


def service_witness_routes(app: web.Application, components: Any) -> list[RouteSpec]:
    """The witness routes of a service whose ``AuditComponents`` carry a witness (else none)."""
    witness = getattr(components, "witness", None)
    if witness is None:
        return []
    return install_witness(app, witness, components.sink)


def witness_info(witness: Witness) -> dict[str, Any]:
    return {"name": witness.name, "vkey": witness.verifier().vkey(), "logs": sorted(witness.logs)}


__all__ = [
    "WITNESS_KEY",
    "install_witness",
    "service_witness_routes",
    "witness_info",
    "witness_routes",
]
