"""``SignedLogSink``: the ``AuditSink`` every other package writes audit events to.

It implements the structural protocol of DEVELOPERS.md::

    class AuditSink(Protocol):
        def record(self, type: str, *, subject: Mapping[str, str],
                   details: Mapping[str, object]) -> None: ...

``record`` builds the v2 payload (actor = the sink's signer), refuses anything
outside the schema with ``AuditSchemaError`` *before* anything is written,
then the log places it (its origin and index), signs it under the append lock
and appends it in its own transaction (with a checkpoint when the log has a
signer). For throughput, group records with ``batch()``:
one transaction and one checkpoint for the whole group.

    sink = SignedLogSink(log, EventSigner.generate("hospital-a"))
    sink.record("access.denied", subject={"permit": jti}, details={"reason": "expired"})
    with sink.batch():
        for r in rounds:
            sink.record("training.round", subject={"job": job}, details={"round": r})
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from audit_chain.events import Event, build_event
from audit_chain.log import AuditLog
from audit_chain.signers import EventSigner


class SignedLogSink:
    """Signs events as ``signer``'s organisation and appends them to ``log``."""

    def __init__(
        self,
        log: AuditLog,
        signer: EventSigner,
        *,
        clock: Callable[[], str] | None = None,
    ) -> None:
        self.log = log
        self.signer = signer
        self.clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()

    def _draft(
        self, type: str, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> tuple[EventSigner, Event]:
        when = self.clock() if self.clock is not None else None
        event = build_event(
            type,
            org=self.signer.org,
            kid=self.signer.kid,
            subject=subject,
            details=details,
            time=when,
        )
        return self.signer, event

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        """Sign and append one event (buffered while inside :meth:`batch` on this thread)."""
        item = self._draft(type, subject, details)  # schema errors surface here, at the caller
        buffer: list[tuple[EventSigner, Event]] | None = getattr(self._local, "buffer", None)
        if buffer is not None:
            buffer.append(item)
            return
        self.log._append_drafts([item])

    def record_entry(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> int:
        """Like :meth:`record` (never buffered) but returns the entry's index."""
        return self.log._append_drafts([self._draft(type, subject, details)]).start

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Buffer this thread's records and append them in one transaction on exit.

        If the block raises, the buffered events are still appended: the
        events describe things that already happened.
        """
        if getattr(self._local, "buffer", None) is not None:
            yield  # nested: the outer batch flushes
            return
        self._local.buffer = []
        try:
            yield
        finally:
            buffer: list[tuple[EventSigner, Event]] = self._local.buffer
            self._local.buffer = None
            if buffer:
                self.log._append_drafts(buffer)


__all__ = ["SignedLogSink"]
