"""Every refused HTTP request is an audit event; a flood of them is one event per window.

Refused means any 4xx answer except 404: "there is no such thing" refuses
nothing (and unknown ids must leave no trace of what was asked for).

Why audit refusals at all: a refused request is an access attempt, and the
data holder (Art. 50, 73) and the HDAB must be able to show who tried what.
Why aggregate: an unauthenticated client could otherwise fill the append-only
log (which can never be pruned) with one entry per request. So the first
refusal per (client, reason) in a window is written at once (``count`` 1);
further ones in that window are only counted, and written as one event with
their ``count`` when the window closes (on the next refusal after it, or by
the periodic flush). The number of tracked (client, reason) pairs is bounded;
beyond it, refusals of unknown clients share one bucket.

The client is the signer's key id when the request carried a valid signature,
otherwise a salted hash of the peer address kept in memory only: no address,
path or identifier is ever written. The event carries the reason code, the
HTTP method as ``operation`` and, when known, the signer's kid as ``requester``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web

from gateway.http.auth import PRINCIPAL_KEY, Principal

LOG = logging.getLogger("ehds.error")
REFUSALS_KEY = web.AppKey("ehds_refusal_audit", object)
#: set on a request whose refusal was already audited elsewhere (e.g. by the PermitGuard)
AUDITED_KEY = web.RequestKey("ehds_refusal_audited", bool)
_CODE = re.compile(r"[^a-z0-9_.:-]+")
MAX_BUCKETS = 10_000

Record = Callable[[str, Mapping[str, str], Mapping[str, object]], None]
RunSync = Callable[[Callable[[], None]], Awaitable[None]]


@dataclass
class _Bucket:
    opened: float
    requester: str | None
    operation: str
    pending: int = 0


@dataclass
class RefusalAudit:
    """Aggregates refusals and writes them through ``record`` (the service's audit sink)."""

    record: Record
    subject: Mapping[str, str] = field(default_factory=dict)
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    written: int = 0
    suppressed: int = 0
    _salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    def client_of(self, request: web.Request) -> tuple[str, str | None]:
        principal: Principal | None = request.get(PRINCIPAL_KEY)
        if principal is not None:
            return "kid:" + principal.kid, principal.kid
        peer = request.remote or "unknown"
        digest = hashlib.sha256(self._salt + peer.encode()).hexdigest()[:16]
        return "peer:" + digest, None

    def refused(
        self, client: str, reason: str, operation: str, requester: str | None
    ) -> list[dict[str, object]]:
        """Account one refusal; returns the events to write now (pure but for the clock)."""
        now = self.clock()
        out: list[dict[str, object]] = []
        key = (client, reason)
        bucket = self.buckets.get(key)
        if bucket is not None and now - bucket.opened < self.window:
            bucket.pending += 1
            self.suppressed += 1
            return out
        if bucket is not None and bucket.pending:
            out.append(self._event(reason, bucket))
        if bucket is None and len(self.buckets) >= MAX_BUCKETS:
            self._expire(now, out)
            if len(self.buckets) >= MAX_BUCKETS:  # still full: everyone else shares one
                key = ("overflow", reason)
                requester = None
                bucket = self.buckets.get(key)
                if bucket is not None and now - bucket.opened < self.window:
                    bucket.pending += 1
                    self.suppressed += 1
                    return out
        self.buckets[key] = _Bucket(now, requester, operation)
        out.append(self._event(reason, _Bucket(now, requester, operation, 1)))
        return out

    def due(self) -> list[dict[str, object]]:
        """Events for windows that closed with refusals still uncounted in the log."""
        out: list[dict[str, object]] = []
        self._expire(self.clock(), out)
        return out

    def _expire(self, now: float, out: list[dict[str, object]]) -> None:
        for key, bucket in list(self.buckets.items()):
            if now - bucket.opened >= self.window:
                if bucket.pending:
                    out.append(self._event(key[1], bucket))
                del self.buckets[key]

    def _event(self, reason: str, bucket: _Bucket) -> dict[str, object]:
        details: dict[str, object] = {
            "reason": reason,
            "operation": bucket.operation,
            "count": bucket.pending,
        }
        if bucket.requester is not None:
            details["requester"] = bucket.requester
        bucket.pending = 0
        return details

    def write(self, events: list[dict[str, object]]) -> None:
        for details in events:
            try:
                self.record("access.denied", self.subject, details)
                self.written += 1
            except Exception as exc:  # the refusal stands; the failure is logged
                LOG.warning(
                    orjson.dumps(
                        {"event": "refusal.audit_failed", "error": type(exc).__name__}
                    ).decode()
                )


def reason_code(code: str | None, status: int) -> str:
    """The problem code as an audit reason (lower case, schema-safe)."""
    text = _CODE.sub("_", (code or f"http_{status}").lower()).strip("_")[:64]
    return text or f"http_{status}"


async def audit_refusal(request: web.Request, status: int, code: str | None) -> None:
    """Called by the ``observe`` middleware for every 4xx answer."""
    audit = request.app.get(REFUSALS_KEY)
    if not isinstance(audit, RefusalAudit) or request.get(AUDITED_KEY):
        return
    client, requester = audit.client_of(request)
    operation = "http." + request.method.lower()[:16]
    events = audit.refused(client, reason_code(code, status), operation, requester)
    if events:
        await request.app[_RUN_KEY](lambda: audit.write(events))


_RUN_KEY: web.AppKey[Any] = web.AppKey("ehds_refusal_runner")


async def _flusher(app: web.Application) -> AsyncIterator[None]:
    audit = app[REFUSALS_KEY]
    assert isinstance(audit, RefusalAudit)

    run = app[_RUN_KEY]

    async def loop() -> None:
        while True:
            await asyncio.sleep(min(1.0, audit.window / 2))
            events = audit.due()
            if events:
                await run(functools.partial(audit.write, events))

    task = asyncio.get_running_loop().create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    rest = [audit._event(k[1], b) for k, b in audit.buckets.items() if b.pending]
    if rest:  # counted refusals are written before the log closes
        with contextlib.suppress(Exception):
            await run(lambda: audit.write(rest))


class _Sink(Protocol):
    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None: ...


class _HasSink(Protocol):
    sink: Any


def record_via(components: _HasSink) -> Record:
    """``record(type, subject, details)`` over a service's audit sink (DEVELOPERS.md shape)."""

    def record(type: str, subject: Mapping[str, str], details: Mapping[str, object]) -> None:
        sink: _Sink = components.sink
        sink.record(type, subject=subject, details=details)

    return record


def install_refusal_audit(
    app: web.Application,
    record: Record,
    run_sync: RunSync,
    subject: Mapping[str, str],
    window: float = 60.0,
) -> RefusalAudit:
    """``record(type, subject, details)`` writes one event; ``run_sync`` runs it on the audit thread."""
    audit = RefusalAudit(record, dict(subject), window)
    app[REFUSALS_KEY] = audit
    app[_RUN_KEY] = run_sync
    app.cleanup_ctx.append(_flusher)
    return audit


__all__ = [
    "AUDITED_KEY",
    "REFUSALS_KEY",
    "RefusalAudit",
    "audit_refusal",
    "install_refusal_audit",
    "reason_code",
    "record_via",
]
