"""Data-quality report: every problem counted by kind, the worst kept for inspection.

Why a report instead of exceptions: one broken line in a 10 GB Bulk export
must not stop a site from taking part, but it must not vanish either. Every
stage (sources, validation, units, references) writes into the same
:class:`QualityReport`; the run goes on and the counts travel with the
feature matrix.

Quarantine entries keep resource type, resource id, element path and a short
message. They stay at the site (an id may be a patient key); only
:meth:`QualityReport.summary` (counts) is meant to leave it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Stable kind codes. Callers and tests match on these strings.
TRUNCATED_LINE = "truncated_line"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_RESOURCE_TYPE = "unknown_resource_type"
INVALID_RESOURCE = "invalid_resource"
UNKNOWN_UNIT = "unknown_unit"
DANGLING_REFERENCE = "dangling_reference"
INVALID_BUNDLE = "invalid_bundle"
VIEW_ERROR = "view_error"
INVALID_VALUE = "invalid_value"
NO_EVENT_TIME = "no_event_time"

KINDS: tuple[str, ...] = (
    TRUNCATED_LINE,
    INVALID_JSON,
    NOT_AN_OBJECT,
    UNKNOWN_RESOURCE_TYPE,
    INVALID_RESOURCE,
    UNKNOWN_UNIT,
    DANGLING_REFERENCE,
    INVALID_BUNDLE,
    VIEW_ERROR,
    INVALID_VALUE,
    NO_EVENT_TIME,
)

#: kinds that keep a whole resource out of the stream (counted per resource type)
QUARANTINE_KINDS = frozenset({UNKNOWN_RESOURCE_TYPE, INVALID_RESOURCE})

MAX_MESSAGE = 200


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One rejected item: what kind of problem, where, and a short message."""

    kind: str
    resource_type: str | None = None
    resource_id: str | None = None
    path: str | None = None
    message: str = ""
    source: str | None = None
    line: int | None = None
    entry: int | None = None  # index in the Bundle's ``entry`` list, for Bundle sources

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "resource_type": self.resource_type,
            "id": self.resource_id,
            "path": self.path,
            "message": self.message,
            "source": self.source,
            "line": self.line,
            "entry": self.entry,
        }


@dataclass
class QualityReport:
    """Counts by problem kind plus a bounded quarantine list.

    ``max_quarantine`` bounds memory on pathological inputs; counts are
    always exact.
    """

    max_quarantine: int = 10_000
    counts: Counter[str] = field(default_factory=Counter)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    resources_read: int = 0
    resources_by_type: Counter[str] = field(default_factory=Counter)
    validated: int = 0
    validation_mode: str = "off"
    fhir_versions: dict[str, str] = field(default_factory=dict)
    #: resources kept out of the stream, per resource type (invalid, unknown type)
    quarantined_by_type: Counter[str] = field(default_factory=Counter)
    #: per source: resources showing another release than the one stated for the source
    release_conflicts: dict[str, int] = field(default_factory=dict)
    #: ids of quarantined Patients: their other rows are not "dangling" (never in a summary)
    quarantined_patients: set[str] = field(default_factory=set)
    #: files read and recognised as not data (a Bulk manifest), by what they are
    files_skipped: Counter[str] = field(default_factory=Counter)

    def add(
        self,
        kind: str,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        path: str | None = None,
        message: str = "",
        source: str | None = None,
        line: int | None = None,
        entry: int | None = None,
    ) -> None:
        """Count one problem and keep its details if there is room."""
        self.counts[kind] += 1
        if resource_type is not None and kind in QUARANTINE_KINDS:
            self.quarantined_by_type[resource_type] += 1
            if resource_type == "Patient" and resource_id is not None:
                self.quarantined_patients.add(resource_id)
        if len(self.quarantine) < self.max_quarantine:
            self.quarantine.append(
                QuarantineEntry(
                    kind=kind,
                    resource_type=resource_type,
                    resource_id=resource_id,
                    path=path,
                    message=message[:MAX_MESSAGE],
                    source=source,
                    line=line,
                    entry=entry,
                )
            )

    def count(self, kind: str, n: int = 1) -> None:
        """Count problems without details (used where details would be redundant)."""
        self.counts[kind] += n

    @property
    def problems(self) -> int:
        return sum(self.counts.values())

    def by_kind(self) -> dict[str, int]:
        """All known kinds (zero included) plus any extra kind seen."""
        out = {k: 0 for k in KINDS}
        out.update(self.counts)
        return out

    def merge(self, other: QualityReport) -> None:
        self.counts.update(other.counts)
        room = self.max_quarantine - len(self.quarantine)
        if room > 0:
            self.quarantine.extend(other.quarantine[:room])
        self.resources_read += other.resources_read
        self.resources_by_type.update(other.resources_by_type)
        self.validated += other.validated
        self.fhir_versions.update(other.fhir_versions)
        self.quarantined_by_type.update(other.quarantined_by_type)
        self.files_skipped.update(other.files_skipped)
        self.quarantined_patients |= other.quarantined_patients
        self.release_conflicts.update(other.release_conflicts)

    def summary(self) -> dict[str, Any]:
        """Counts only: safe to print, log and share (no ids, no messages)."""
        return {
            "resources_read": self.resources_read,
            "resources_by_type": dict(sorted(self.resources_by_type.items())),
            "validation_mode": self.validation_mode,
            "validated": self.validated,
            "problems": self.problems,
            "problems_by_kind": self.by_kind(),
            "quarantined_by_type": dict(sorted(self.quarantined_by_type.items())),
            "files_skipped": dict(sorted(self.files_skipped.items())),
            "fhir_versions": sorted(set(self.fhir_versions.values())),
            "release_conflicts": sum(self.release_conflicts.values()),
        }
