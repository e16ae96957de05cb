"""The resource stream: every source, one interface, one quality report.

A resource stream is ``Iterable[dict]`` of parsed FHIR resources. This module
opens file sources (NDJSON files/folders, Bundle files/folders, mixed
folders) or wraps any in-memory/network iterable, and applies the checks
every later stage relies on, once:

* a JSON object with a ``resourceType`` known to FHIR R4 or R5 (else
  ``unknown_resource_type``, quarantined);
* the FHIR release of each source (R4 or R5), detected from the data
  (:func:`detect_version`) unless the caller knows it (Bulk manifest,
  CapabilityStatement); it picks the validator's models;
* validation in the requested mode (:mod:`fhir_adapters.validation`).

Per-source detection matters: one site may serve R4 (Synthea, most hospital
systems) and R5 (Estonia's national profiles, FHIR 5.0.0) side by side.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fhir_adapters.bundle import iter_json_file
from fhir_adapters.errors import SourceError
from fhir_adapters.ndjson import is_ndjson, iter_ndjson
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

DETECTION_WINDOW = 512  # resources buffered at most while the release is unknown


_BULK_SIDE_FOLDERS = frozenset({"error", "deleted"})


def iter_path(path: str | Path, report: QualityReport) -> Iterator[dict[str, Any]]:
    """Raw resources of a file or folder: NDJSON (plain/gz) and JSON Bundles/resources."""
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and (is_ndjson(p) or p.name.lower().endswith(".json"))
            # A Bulk Data export folder keeps OperationOutcomes in error/ and deleted
            # Bundles in deleted/: neither is data, both would be miscounted as resources.
            and not _BULK_SIDE_FOLDERS.intersection(p.relative_to(root).parts[:-1])
        )
    else:
        raise SourceError(f"source not found: {root.name}")
    for file in files:
        if is_ndjson(file):
            yield from iter_ndjson(file, report)
        else:
            yield from iter_json_file(file, report)


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
    (e.g. from :mod:`fhir_adapters.sources`). ``fhir_version`` forces the
    release for every source; otherwise it is detected per source.
    ``validate_types`` limits validation to those resource types (the ones a
    feature spec's views read); None validates every type.
    Iterate it once; ``report`` holds the counts afterwards.
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

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index, source in enumerate(self.sources):
            if isinstance(source, str | Path):
                name = Path(source).name or str(source)
                raw = iter_path(source, self.report)
            else:
                name = f"stream-{index}"
                raw = iter(source)
            yield from self._checked(raw, name)

    def _checked(self, raw: Iterator[dict[str, Any]], name: str) -> Iterator[dict[str, Any]]:
        report = self.report
        known = known_resource_types()
        by_type: dict[str, int] = {}
        version = self.forced_version
        pending: list[dict[str, Any]] = []
        validator = self.validator
        validating = validator.rate > 0.0
        vtypes = self.validate_types
        try:
            for resource in raw:
                if type(resource) is not dict:
                    report.add(
                        NOT_AN_OBJECT, message="stream item is not a JSON object", source=name
                    )
                    continue
                rtype = resource.get("resourceType")
                if type(rtype) is not str or rtype not in known:
                    rid = resource.get("id")
                    report.add(
                        UNKNOWN_RESOURCE_TYPE,
                        resource_type=rtype if isinstance(rtype, str) else None,
                        resource_id=rid if isinstance(rid, str) else None,
                        path="resourceType",
                        message="not a FHIR R4/R5 resource type" if rtype else "no resourceType",
                        source=name,
                    )
                    continue
                by_type[rtype] = by_type.get(rtype, 0) + 1
                if version is None:
                    version = detect_version(resource)
                    if version is None:
                        pending.append(resource)
                        if len(pending) < DETECTION_WINDOW:
                            continue
                        version = DEFAULT_VERSION
                        yield from self._release(pending, version, name)
                        pending.clear()
                        continue
                    # decided by this resource: release what waited, then go on with it
                    yield from self._release(pending, version, name)
                    pending.clear()
                if (
                    validating
                    and (vtypes is None or rtype in vtypes)
                    and not validator.accept(resource, version, name)
                ):
                    continue
                yield resource
            if pending:
                version = version or DEFAULT_VERSION
                yield from self._release(pending, version, name)
        finally:
            for k, v in by_type.items():
                report.resources_by_type[k] += v
            report.resources_read += sum(by_type.values())
            if version is not None:
                self.versions[name] = version
                report.fhir_versions[name] = version

    def _release(
        self, pending: list[dict[str, Any]], version: str, name: str
    ) -> Iterator[dict[str, Any]]:
        validator = self.validator
        for resource in pending:
            if (
                validator.rate == 0.0
                or (
                    self.validate_types is not None
                    and resource["resourceType"] not in self.validate_types
                )
                or validator.accept(resource, version, name)
            ):
                yield resource


def open_stream(
    *sources: str | Path | Iterable[dict[str, Any]],
    validate: str = "off",
    fhir_version: str | None = None,
    sample_rate: float = DEFAULT_SAMPLE_RATE,
    report: QualityReport | None = None,
) -> ResourceStream:
    """Shorthand: ``open_stream("export/", validate="sample")``."""
    return ResourceStream(
        list(sources),
        validate=validate,
        fhir_version=fhir_version,
        sample_rate=sample_rate,
        report=report,
    )
