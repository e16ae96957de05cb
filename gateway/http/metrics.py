"""In-process metrics rendered as Prometheus text (exposition format 0.0.4).

Deliberately tiny: counters, one latency histogram and gauges read at scrape
time (the audit log size), so ``/metrics`` needs no extra dependency. Label
values are route templates, status codes and reason codes: never paths with
identifiers in them, never anything about a patient.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

#: Audit event types that are permit decisions; ``details.reason`` becomes a label.
DECISION_EVENTS: frozenset[str] = frozenset(
    {
        "permit.approved",
        "permit.refused",
        "permit.issued",
        "permit.amended",
        "permit.revoked",
        "access.allowed",
        "access.denied",
    }
)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(key)} {value:g}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    series: dict[Labels, list[float]] = field(default_factory=dict)  # per bucket + sum + count

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.buckets) + 2)
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            row[index] += 1
        row[-2] += value
        row[-1] += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for key, row in sorted(self.series.items()):
            cumulative = 0.0
            for bound, count in zip(self.buckets, row, strict=False):
                cumulative += count
                yield f"{self.name}_bucket{_labels((*key, ('le', f'{bound:g}')))} {cumulative:g}"
            yield f"{self.name}_bucket{_labels((*key, ('le', '+Inf')))} {row[-1]:g}"
            yield f"{self.name}_sum{_labels(key)} {row[-2]:.6f}"
            yield f"{self.name}_count{_labels(key)} {row[-1]:g}"


@dataclass
class Gauge:
    name: str
    help: str
    read: Callable[[], float | None]

    def render(self) -> Iterable[str]:
        try:
            value = self.read()
        except Exception:  # a broken dependency must not break the scrape
            value = None
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        if value is not None:
            yield f"{self.name} {value:g}"


class Metrics:
    """All metrics of one service; thread-safe because audit sinks may run in threads."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self.requests = Counter(
            "ehds_http_requests_total", "HTTP requests by route template, method and status."
        )
        self.latency = Histogram("ehds_http_request_duration_seconds", "HTTP request latency.")
        self.problems = Counter("ehds_http_problems_total", "Refused requests by problem code.")
        self.decisions = Counter(
            "ehds_permit_decisions_total", "Permit decisions by audit event type and reason code."
        )
        self.audit_events = Counter("ehds_audit_events_total", "Audit events written by type.")
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help: str, read: Callable[[], float | None]) -> None:
        self.gauges.append(Gauge(name, help, read))

    def observe_request(
        self, method: str, route: str, status: int, seconds: float, code: str | None
    ) -> None:
        with self._lock:
            self.requests.inc(method=method, route=route, status=str(status))
            self.latency.observe(seconds, route=route)
            if code:
                self.problems.inc(code=code)

    def observe_event(self, type: str, details: Mapping[str, object]) -> None:
        with self._lock:
            self.audit_events.inc(type=type)
            if type in DECISION_EVENTS:
                reason = details.get("reason")
                self.decisions.inc(event=type, reason=reason if isinstance(reason, str) else "none")

    def render(self) -> str:
        with self._lock:
            lines: list[str] = [
                "# HELP ehds_info Service identity.",
                "# TYPE ehds_info gauge",
                f'ehds_info{{service="{_escape(self.service)}"}} 1',
            ]
            for metric in (
                self.requests,
                self.latency,
                self.problems,
                self.decisions,
                self.audit_events,
            ):
                lines.extend(metric.render())
        for gauge in self.gauges:
            lines.extend(gauge.render())
        return "\n".join(lines) + "\n"


__all__ = ["CONTENT_TYPE", "DECISION_EVENTS", "Counter", "Gauge", "Histogram", "Metrics"]
