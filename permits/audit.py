"""The audit sink protocol (DEVELOPERS.md) and two small sinks for tests and tools.

``permits`` imports nothing of ours, so it declares the sink shape itself;
``audit_chain.sink.SignedLogSink`` implements it structurally. Subjects are
identifiers and details are codes, hashes and counts: never personal data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@runtime_checkable
class AuditSink(Protocol):
    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None: ...


@dataclass(frozen=True)
class RecordedEvent:
    type: str
    subject: dict[str, str]
    details: dict[str, object]


@dataclass
class MemorySink:
    """Keeps events in a list: for tests and for dry runs of the CLI."""

    events: list[RecordedEvent] = field(default_factory=list)

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        self.events.append(RecordedEvent(type, dict(subject), dict(details)))

    def types(self) -> list[str]:
        return [e.type for e in self.events]


class NullSink:
    """Drops events. Only for benchmarks; production code always passes a real sink."""

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        return None


__all__ = ["AuditSink", "MemorySink", "NullSink", "RecordedEvent"]
