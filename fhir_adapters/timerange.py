"""A permit's ``time_range`` applied to a resource stream, before any feature is computed.

A permit grants records from ``start`` to ``end`` (inclusive days). This is a
separate step in front of feature extraction (extraction itself is unchanged):
every clinical resource whose record date lies outside the range, or that has
no record date at all, is dropped and counted. Resources that carry no record
date by nature (Patient, Organization, ...) pass: they are the subjects the
dated records hang on, and a patient with no record in range yields no rows
from the spec's dated views anyway. Undated clinical records are dropped
because "we could not tell when" must not mean "in scope" (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

#: Where each resource type keeps its record date, in order of preference (R4 and R5 names).
DATE_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Observation": (
        ("effectiveDateTime",),
        ("effectivePeriod", "start"),
        ("effectiveInstant",),
        ("issued",),
    ),
    "Condition": (("onsetDateTime",), ("onsetPeriod", "start"), ("recordedDate",)),
    "Encounter": (("period", "start"), ("actualPeriod", "start")),
    "Procedure": (("performedDateTime",), ("performedPeriod", "start"), ("occurrenceDateTime",)),
    "MedicationRequest": (("authoredOn",),),
    "MedicationStatement": (
        ("effectiveDateTime",),
        ("effectivePeriod", "start"),
        ("dateAsserted",),
    ),
    "MedicationAdministration": (("effectiveDateTime",), ("effectivePeriod", "start")),
    "DiagnosticReport": (("effectiveDateTime",), ("effectivePeriod", "start"), ("issued",)),
    "Immunization": (("occurrenceDateTime",), ("recorded",)),
    "AllergyIntolerance": (("onsetDateTime",), ("recordedDate",)),
    "ServiceRequest": (("authoredOn",),),
    "CarePlan": (("period", "start"), ("created",)),
    "Claim": (("created",),),
}


@dataclass
class TimeRangeFilter:
    """Keeps resources dated within ``[start, end]``; counts what it drops in ``excluded``."""

    start: date
    end: date
    excluded: int = 0

    @classmethod
    def from_iso(cls, start: str, end: str) -> TimeRangeFilter:
        return cls(date.fromisoformat(start), date.fromisoformat(end))

    def keeps(self, resource: Mapping[str, Any]) -> bool:
        paths = DATE_PATHS.get(str(resource.get("resourceType")))
        if paths is None:
            return True
        day = record_date(resource, paths)
        return day is not None and self.start <= day <= self.end

    def apply(self, resources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for resource in resources:
            if self.keeps(resource):
                yield resource
            else:
                self.excluded += 1


class FilteredStream:
    """A resource stream (anything with ``report``) seen through a :class:`TimeRangeFilter`.

    Keeps the inner stream's quality report, so ``extract_features`` uses it as-is.
    """

    def __init__(self, inner: Any, time_filter: TimeRangeFilter) -> None:
        self.inner = inner
        self.report = inner.report
        self.filter = time_filter

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.filter.apply(iter(self.inner))


def record_date(resource: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> date | None:
    """The first parseable date along ``paths`` (a FHIR date/dateTime's day), or None."""
    for path in paths:
        value: Any = resource
        for name in path:
            value = value.get(name) if isinstance(value, Mapping) else None
        if isinstance(value, str) and len(value) >= 4:
            day = _day(value)
            if day is not None:
                return day
    return None


def _day(value: str) -> date | None:
    """``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or a dateTime; partial dates take the first day."""
    text = value[:10]
    try:
        if len(text) == 4:
            return date(int(text), 1, 1)
        if len(text) == 7:
            return date(int(text[:4]), int(text[5:7]), 1)
        return date.fromisoformat(text)
    except ValueError:
        return None


__all__ = ["DATE_PATHS", "FilteredStream", "TimeRangeFilter", "record_date"]
