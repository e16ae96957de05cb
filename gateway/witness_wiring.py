"""How a service gets its witness and its witnessing: from configuration files, in its audit database.

* :func:`open_witness` -- this organisation's witness (``audit.witness_key``,
  name ``<org>/witness``), cosigning the logs listed in ``audit.witness_logs``
  (C2SP vkeys), with its state in the same database as the service's own log.
* :func:`start_witnessing` -- the background client asking the witnesses in
  ``audit.witnesses`` (``<vkey> <url>`` lines) to cosign this log's checkpoints.
* :func:`witness_app` -- a witness alone on an aiohttp app: what the coordinator
  (which runs no other HTTP service), the demo and the benchmark serve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from aiohttp import web

from audit_chain.log import AuditLog
from audit_chain.note import SIG_COSIGNATURE_V1, NoteSigner, NoteVerifier
from audit_chain.storage import LogStore
from audit_chain.witness import Witness, load_vkeys
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.http.middleware import MAX_BODY_KEY, SERVICE_KEY, guard, observe
from gateway.http.routing import SPECS_KEY, install
from gateway.http.witness_routes import AuditSink, install_witness
from gateway.keystore import load_or_create_private_key
from gateway.witnessing import WitnessEndpoint, Witnessing


def witness_name(org: str) -> str:
    return f"{org}/witness"


def witness_signer(name: str, jwk: Mapping[str, object]) -> NoteSigner:
    return NoteSigner.from_jwk(name, jwk, SIG_COSIGNATURE_V1)


def logs_by_origin(keys: Iterable[NoteVerifier]) -> dict[str, list[NoteVerifier]]:
    out: dict[str, list[NoteVerifier]] = {}
    for key in keys:
        out.setdefault(key.name, []).append(key)
    return out


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def open_witness(config: GatewayConfig, store: LogStore) -> Witness:
    key = load_or_create_private_key(config.audit_witness_key)
    signer = witness_signer(witness_name(config.org), key.export(private_key=True, as_dict=True))
    logs = config.audit.witness_logs
    known = logs_by_origin(load_vkeys(_lines(logs))) if logs is not None else {}
    return Witness(signer, store, known)


def start_witnessing(config: GatewayConfig, log: AuditLog) -> Witnessing | None:
    path = config.audit.witnesses
    if path is None:
        return None
    endpoints = [
        WitnessEndpoint.parse(line)
        for line in _lines(path)
        if line.strip() and not line.startswith("#")
    ]
    return Witnessing(log, endpoints).start() if endpoints else None


def witness_app(
    witness: Witness, *, audit: AuditSink | None = None, max_body: int = 65536
) -> web.Application:
    """An aiohttp app serving only ``witness`` (public routes; the checkpoint signature authenticates)."""
    app = web.Application(middlewares=[observe, guard], client_max_size=max_body)
    app[MAX_BODY_KEY] = max_body
    app[SERVICE_KEY] = "witness"
    app[SPECS_KEY] = {}
    install(app, install_witness(app, witness, audit))
    return app


def witness_for(
    name: str,
    jwk: Mapping[str, object],
    store: LogStore,
    logs: Sequence[NoteVerifier],
) -> Witness:
    """A witness from an in-memory key (the demo and tests)."""
    return Witness(witness_signer(name, jwk), store, logs_by_origin(logs))


__all__ = [
    "logs_by_origin",
    "open_witness",
    "start_witnessing",
    "witness_app",
    "witness_for",
    "witness_name",
    "witness_signer",
]
