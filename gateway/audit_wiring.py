"""How a service gets its audit log: the sink, the cached view, the FHIR export, the metrics.

The domain packages write audit events through their own ``AuditSink``
protocol; the services wrap the real sink (``audit_chain``'s signed log) in
:class:`NotifyingSink`, which drops the cached checkpoint as soon as this
process appends. Decision metrics are *read back from the log*
(:class:`LogTail`) rather than counted at the sink, so they include events
written by other processes into the same log (e.g. the Flower ClientApp's
``access.denied`` at a hospital) and can never disagree with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gateway.audit_view import ThreadedAuditView
from gateway.http.metrics import Metrics

if TYPE_CHECKING:
    from audit_chain.witness import Witness

TAIL_PAGE = 1000


class AuditSink(Protocol):
    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None: ...


class NotifyingSink:
    """Forwards to ``inner``; after a durable append, tells the view its checkpoint is stale."""

    def __init__(self, inner: AuditSink, on_append: Callable[[], None]) -> None:
        self.inner = inner
        self.on_append = on_append

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        self.inner.record(type, subject=subject, details=details)
        self.on_append()


AuditEventExport = Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]]


@dataclass
class AuditComponents:
    """Everything a service needs of its audit log; ``close`` releases the database."""

    view: ThreadedAuditView
    sink: AuditSink
    to_fhir: AuditEventExport | None = None
    public_keys: list[dict[str, Any]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    witness: Witness | None = None
    """This organisation's witness (state in the same database), served at ``/witness``."""

    def close(self) -> None:
        self.view.close()
        for closer in self.closers:
            closer()


class LogTail:
    """Feeds every new log entry's type and reason into the metrics, once each."""

    def __init__(self, view: ThreadedAuditView, metrics: Metrics) -> None:
        self.view = view
        self.metrics = metrics
        self.seen = 0

    async def catch_up(self) -> int:
        size = await self.view.tree_size()
        while self.seen < size:
            end = min(size, self.seen + TAIL_PAGE)
            for entry in await self.view.entries(self.seen, end):
                payload = entry.get("payload") or {}
                self.metrics.observe_event(
                    str(payload.get("type", "")), payload.get("details") or {}
                )
            self.seen = end
        return size


def metered(components: AuditComponents, metrics: Metrics) -> tuple[AuditComponents, LogTail]:
    """Wire the components to ``metrics``: stale-checkpoint notification, log size, log tail."""
    components.sink = NotifyingSink(components.sink, components.view.invalidate)
    metrics.gauge(
        "ehds_audit_log_size",
        "Entries in this service's audit log (as of the cached checkpoint).",
        lambda: components.view.cached_size(),
    )
    return components, LogTail(components.view, metrics)


__all__ = [
    "AuditComponents",
    "AuditEventExport",
    "AuditSink",
    "LogTail",
    "NotifyingSink",
    "metered",
]
