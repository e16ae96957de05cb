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

import asyncio
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from aiohttp import web

import trust
from audit_chain.log import AuditLog
from audit_chain.note import SIG_COSIGNATURE_V1, NoteSigner, NoteVerifier
from audit_chain.storage import LogStore
from audit_chain.witness import Witness, load_vkeys
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.http.middleware import MAX_BODY_KEY, SERVICE_KEY, guard, observe
from gateway.http.routing import SPECS_KEY, install
from gateway.http.witness_routes import AuditSink, install_witness
from gateway.witnessing import WitnessEndpoint, Witnessing
from trust import KeyUse


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


def load_witness_key(path: Path) -> dict[str, object]:
    """The witness's private Ed25519 JWK (created 0600, declared for the witness use only)."""
    try:
        return trust.SigningKey.load_or_create(path, uses={KeyUse.WITNESS}).private_jwk()
    except trust.TrustError as exc:
        raise ConfigError(f"witness key {path}: {exc}") from None


def open_witness(config: GatewayConfig, store: LogStore) -> Witness:
    key = load_witness_key(config.audit_witness_key)
    signer = witness_signer(witness_name(config.org), key)
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


class WitnessServers:
    """Witnesses served on loopback ports from one background thread (demo, bench, tests).

    ``with WitnessServers([w1, w2]) as urls:`` -> submission prefixes
    ``http://127.0.0.1:<port>/witness``; everything is stopped on exit.
    """

    def __init__(
        self, witnesses: Sequence[Witness], audits: Sequence[AuditSink | None] | None = None
    ) -> None:
        self.witnesses = list(witnesses)
        self.audits = list(audits) if audits is not None else [None] * len(self.witnesses)
        self.urls: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []

    async def _start(self) -> list[str]:
        urls = []
        for witness, audit in zip(self.witnesses, self.audits, strict=True):
            runner = web.AppRunner(witness_app(witness, audit=audit), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            port = runner.addresses[0][1]
            urls.append(f"http://127.0.0.1:{port}/witness")
        return urls

    async def _stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    def __enter__(self) -> list[str]:
        self._thread.start()
        self.urls = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self.urls

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


__all__ = [
    "WitnessServers",
    "load_witness_key",
    "logs_by_origin",
    "open_witness",
    "start_witnessing",
    "witness_app",
    "witness_for",
    "witness_name",
    "witness_signer",
]
