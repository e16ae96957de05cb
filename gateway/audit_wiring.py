"""How a service gets its audit log: the metered sink, the cached view, the FHIR export.

The domain packages write audit events through their own ``AuditSink``
protocol. The services wrap the real sink (``audit_chain``'s signed log) in
:class:`MeteredSink`, so every permit decision is counted by reason code for
``/metrics`` on its way into the log, and the cached checkpoint is dropped as
soon as this process appends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.audit_view import ThreadedAuditView
from gateway.http.metrics import Metrics


class AuditSink(Protocol):
    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None: ...


class MeteredSink:
    """Forwards to ``inner``; counts only after the event is durably recorded."""

    def __init__(
        self, inner: AuditSink, metrics: Metrics, on_append: Callable[[], None] | None = None
    ) -> None:
        self.inner = inner
        self.metrics = metrics
        self.on_append = on_append

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        self.inner.record(type, subject=subject, details=details)
        self.metrics.observe_event(type, details)
        if self.on_append is not None:
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

    def close(self) -> None:
        self.view.close()
        for closer in self.closers:
            closer()


def metered(components: AuditComponents, metrics: Metrics) -> AuditComponents:
    """The same components with the sink counted in ``metrics`` and the view invalidated."""
    components.sink = MeteredSink(components.sink, metrics, components.view.invalidate)
    metrics.gauge(
        "ehds_audit_log_size",
        "Entries in this service's audit log (as of the cached checkpoint).",
        lambda: components.view.cached_size(),
    )
    return components


__all__ = ["AuditComponents", "AuditEventExport", "AuditSink", "MeteredSink", "metered"]
