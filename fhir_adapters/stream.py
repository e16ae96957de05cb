"""The resource stream: every source, one interface, one quality report.

A resource stream is ``Iterable[dict]`` of parsed FHIR resources. This module
opens file sources (NDJSON files/folders, Bundle files/folders, mixed
folders) or wraps any in-memory/network iterable, and applies the checks
every later stage relies on, once:

* a JSON object with a ``resourceType`` known to FHIR R4 or R5 (else
  ``unknown_resource_type``, quarantined);
* the FHIR release of each resource (R4 or R5): stated by the caller, recorded
  by the source, or shown by the resource (see :class:`ResourceStream`); it
  picks the validator's models;
* validation in the requested mode (:mod:`fhir_adapters.validation`).

Per-source detection matters: one site may serve R4 (Synthea, most hospital
systems) and R5 (Estonia's national profiles, FHIR 5.0.0) side by side.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fhir_adapters.bundle import iter_bundle, iter_json_file
from fhir_adapters.errors import SourceError, ValidationModeError
from fhir_adapters.ndjson import is_ndjson, iter_ndjson
from fhir_adapters.position import ReadPosition
from fhir_adapters.quality import NOT_AN_OBJECT, UNKNOWN_RESOURCE_TYPE, QualityReport
from fhir_adapters.release import (
    DEFAULT_VERSION,
    R4,
    R5,
    detect_version,
    known_resource_types,
    normalize_version,
    resource_types,
)
from fhir_adapters.validation import DEFAULT_SAMPLE_RATE, Validator

__all__ = [
    "DEFAULT_VERSION",
    "R4",
    "R5",
    "ResourceStream",
    "detect_version",
    "iter_path",
    "known_resource_types",
    "normalize_version",
    "open_stream",
    "resource_types",
]

_BULK_SIDE_FOLDERS = frozenset({"error", "deleted"})
_JSON_SUFFIXES = (".json", ".json.gz")


def source_files(root: Path) -> list[Path]:
    """The data files of a folder: NDJSON (plain/gz) and JSON (plain/gz), sorted."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and (is_ndjson(p) or p.name.lower().endswith(_JSON_SUFFIXES))
        # A Bulk Data export folder keeps OperationOutcomes in error/ and deleted
        # Bundles in deleted/: neither is data, both would be miscounted as resources.
        and not _BULK_SIDE_FOLDERS.intersection(p.relative_to(root).parts[:-1])
    )


def iter_path(
    path: str | Path, report: QualityReport, position: ReadPosition | None = None
) -> Iterator[dict[str, Any]]:
    """Raw resources of a file or folder: NDJSON (plain/gz) and JSON Bundles/resources.

    The one file reader: every product path (``ehds features``, ``ehds view
    run``, the node's dry run, the Bulk export folder reader) comes through here.
    """
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = source_files(root)
    else:
        raise SourceError(f"source not found: {root.name}")
    for file in files:
        if is_ndjson(file):
            yield from iter_ndjson(file, report, position)
        else:
            yield from iter_json_file(file, report, position)


def _normalize_sources(sources: Any) -> list[Any]:
    """A list of sources, whichever way they were given.

    A path is one source; a list/iterator whose items are resource dicts is
    one in-memory source (never materialised); otherwise each item is a
    source (a path or an iterable of resources).
    """
    if isinstance(sources, str | Path):
        return [sources]
    if isinstance(sources, dict):
        return [[sources]]
    if isinstance(sources, list | tuple):
        if sources and isinstance(sources[0], dict):
            return [sources]
        return list(sources)
    iterator = iter(sources)
    try:
        first = next(iterator)
    except StopIteration:
        return []
    if isinstance(first, dict):
        return [itertools.chain([first], iterator)]
    return [first, *iterator]


class ResourceStream:
    """An iterable of checked resources from one or more sources.

    ``sources`` are paths (files or folders) or iterables of resource dicts
    (e.g. from :mod:`fhir_adapters.sources`); a Bundle among them (in memory or
    in a file) is read as its entries. The FHIR release of each resource is,
    strongest first: ``fhir_version`` (the spec's or view's ``fhirVersion``,
    or the caller's), the release the source recorded (a Bulk export folder's
    state file), what the resource itself shows (:func:`detect_version`); a
    resource that shows nothing is validated against the release seen last
    in its source and, if invalid there, against the other one, so a folder
    mixing R4 and R5 files loses nothing valid. ``validate_types`` limits
    validation to those resource types (the ones a feature spec's views
    read); None validates every type. Iterate it once; ``report`` holds the
    counts afterwards.
    """

    def __init__(
        self,
        sources: Iterable[str | Path | Iterable[dict[str, Any]]] | str | Path,
        *,
        validate: str = "off",
        fhir_version: str | None = None,
        sample_rate: float = DEFAULT_SAMPLE_RATE,
        report: QualityReport | None = None,
        validate_types: Iterable[str] | None = None,
    ) -> None:
        self.sources = _normalize_sources(sources)
        # validate only what is used: a Claim no view reads cannot change a feature
        self.validate_types = frozenset(validate_types) if validate_types is not None else None
        self.report = report if report is not None else QualityReport()
        self.validator = Validator(validate, self.report, sample_rate=sample_rate)
        self.forced_version = normalize_version(fhir_version) if fhir_version else None
        self.versions: dict[str, str] = {}
        self.position = ReadPosition()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index, source in enumerate(self.sources):
            self.position.at(None)
            recorded: str | None = None
            if isinstance(source, str | Path):
                name = Path(source).name or str(source)
                raw = iter_path(source, self.report, self.position)
                recorded = recorded_version(Path(source))
            else:
                name = f"stream-{index}"
                raw = iter(source)
            yield from self._checked(raw, name, recorded)

    def _checked(
        self, raw: Iterator[dict[str, Any]], name: str, recorded: str | None
    ) -> Iterator[dict[str, Any]]:
        st = _SourceState(self.forced_version or recorded)
        try:
            yield from self._loop(raw, name, st)
        finally:
            report = self.report
            for k, v in st.by_type.items():
                report.resources_by_type[k] += v
            report.resources_read += sum(st.by_type.values())
            fixed, releases = st.fixed, st.releases
            version = fixed or ("+".join(sorted(releases)) if releases else DEFAULT_VERSION)
            self.versions[name] = version
            report.fhir_versions[name] = version
            if fixed is not None:
                # resources that show the other release than the one stated: read as stated,
                # counted so a summary can say the data and the spec disagree
                conflicts = sum(n for rel, n in releases.items() if rel != fixed)
                if conflicts:
                    report.release_conflicts[name] = conflicts

    def _loop(self, raw: Iterable[Any], name: str, st: _SourceState) -> Iterator[dict[str, Any]]:
        """The checks, per resource; a Bundle among the items is read as its entries."""
        report = self.report
        pos = self.position
        known = known_resource_types()
        by_type = st.by_type
        releases = st.releases
        fixed = st.fixed
        validator = self.validator
        validating = validator.rate > 0.0
        vtypes = self.validate_types
        for resource in raw:
            if type(resource) is not dict:
                report.add(
                    NOT_AN_OBJECT,
                    message="stream item is not a JSON object",
                    source=pos.source or name,
                    line=pos.line,
                    entry=pos.entry,
                )
                continue
            rtype = resource.get("resourceType")
            if rtype == "Bundle" and type(resource.get("entry")) is list:
                entries = iter_bundle(resource, report, source=pos.source or name, position=pos)
                yield from self._loop(entries, name, st)
                continue
            if type(rtype) is not str or rtype not in known:
                self._unknown(resource, rtype, name)
                continue
            by_type[rtype] = by_type.get(rtype, 0) + 1
            shown = detect_version(resource)
            if shown is not None:
                st.last = shown
                releases[shown] = releases.get(shown, 0) + 1
            if (
                validating
                and (vtypes is None or rtype in vtypes)
                and not validator.accept(
                    resource,
                    fixed or shown or st.last,
                    pos.source or name,
                    line=pos.line,
                    entry=pos.entry,
                    alternative=None if (fixed or shown) else _other(fixed or st.last),
                )
            ):
                continue
            yield resource

    def _unknown(self, resource: dict[str, Any], rtype: Any, name: str) -> None:
        pos = self.position
        rid = resource.get("id")
        if not rtype and pos.line is None and pos.entry is None and pos.source:
            message = f"file {pos.source[:80]} is a JSON object without resourceType"
        else:
            message = "not a FHIR R4/R5 resource type" if rtype else "no resourceType"
        self.report.add(
            UNKNOWN_RESOURCE_TYPE,
            resource_type=rtype if isinstance(rtype, str) else None,
            resource_id=rid if isinstance(rid, str) else None,
            path="resourceType",
            message=message,
            source=pos.source or name,
            line=pos.line,
            entry=pos.entry,
        )


def _other(version: str) -> str:
    return R5 if version == R4 else R4


class _SourceState:
    """Counts and release state of one source while it is read (Bundles inside share it)."""

    __slots__ = ("by_type", "fixed", "last", "releases")

    def __init__(self, fixed: str | None) -> None:
        self.fixed = fixed  # stated (caller, spec, view) or recorded (export state) release
        self.last = fixed or DEFAULT_VERSION  # the release the source showed last
        self.by_type: dict[str, int] = {}
        self.releases: dict[str, int] = {}


def recorded_version(path: Path) -> str | None:
    """The release a Bulk export folder's state file recorded for its server, if any."""
    if not path.is_dir():
        return None
    from fhir_adapters.errors import FhirAdapterError
    from fhir_adapters.sources.export_state import load_state

    try:
        state = load_state(path)
    except (FhirAdapterError, ValueError, OSError):
        return None
    if state is None or not state.fhir_version:
        return None
    try:
        return normalize_version(state.fhir_version)
    except ValidationModeError:
        return None


def open_stream(
    *sources: str | Path | Iterable[dict[str, Any]] | dict[str, Any],
    validate: str = "off",
    fhir_version: str | None = None,
    sample_rate: float = DEFAULT_SAMPLE_RATE,
    report: QualityReport | None = None,
) -> ResourceStream:
    """Shorthand: ``open_stream("export/", validate="sample")``; a Bundle dict is read as entries."""
    return ResourceStream(
        [[s] if isinstance(s, dict) else s for s in sources],
        validate=validate,
        fhir_version=fhir_version,
        sample_rate=sample_rate,
        report=report,
    )
