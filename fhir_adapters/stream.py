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
import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from fhir_adapters.bundle import iter_json_file
from fhir_adapters.errors import SourceError, ValidationModeError
from fhir_adapters.ndjson import is_ndjson, iter_ndjson
from fhir_adapters.quality import NOT_AN_OBJECT, UNKNOWN_RESOURCE_TYPE, QualityReport
from fhir_adapters.validation import DEFAULT_SAMPLE_RATE, Validator

R4 = "R4"
R5 = "R5"
DEFAULT_VERSION = R4
DETECTION_WINDOW = 512  # resources buffered at most while the release is unknown


@lru_cache(maxsize=1)
def resource_types() -> dict[str, frozenset[str]]:
    """Resource type names per release (data file generated from fhir.resources)."""
    text = (
        importlib_resources.files("fhir_adapters").joinpath("data/resource_types.json").read_text()
    )
    data = json.loads(text)
    return {R4: frozenset(data[R4]), R5: frozenset(data[R5])}


@lru_cache(maxsize=1)
def known_resource_types() -> frozenset[str]:
    types = resource_types()
    return types[R4] | types[R5]


def normalize_version(value: str) -> str:
    """``4.0.1``, ``4.3.0``, ``R4B`` -> ``R4``; ``5.0.0``, ``R5`` -> ``R5``."""
    v = value.strip().upper()
    if v.startswith(("R4", "4.")) or v == "4":
        return R4
    if v.startswith(("R5", "5.")) or v == "5":
        return R5
    raise ValidationModeError(f"unsupported FHIR version {value!r}; use R4 or R5")


# Profiles whose host implies the release (national IGs pin one release).
_R5_PROFILE_MARKERS = ("hl7.org/fhir/R5/", "hl7.org/fhir/5.0", "fhir.ee/")
_R4_PROFILE_MARKERS = ("hl7.org/fhir/R4/", "hl7.org/fhir/4.0", "hl7.org/fhir/us/core/")


def detect_version(resource: dict[str, Any]) -> str | None:
    """The release a resource proves, or None when it fits both.

    Signals, strongest first: a declared ``fhirVersion`` (CapabilityStatement,
    StructureDefinition, ImplementationGuide); ``meta.profile`` URLs of a
    release-pinned IG; a resource type that exists in only one release;
    elements whose shape changed between R4 and R5.
    """
    declared = resource.get("fhirVersion")
    if isinstance(declared, str):
        try:
            return normalize_version(declared)
        except ValidationModeError:
            pass
    meta = resource.get("meta")
    if type(meta) is dict:
        for profile in meta.get("profile") or ():
            if isinstance(profile, str):
                if any(m in profile for m in _R5_PROFILE_MARKERS):
                    return R5
                if any(m in profile for m in _R4_PROFILE_MARKERS):
                    return R4
    rtype = resource.get("resourceType")
    types = resource_types()
    in4 = rtype in types[R4]
    in5 = rtype in types[R5]
    if in4 != in5:
        return R4 if in4 else R5
    return _structural_marker(rtype, resource)


def _structural_marker(rtype: Any, r: dict[str, Any]) -> str | None:
    if rtype == "Encounter":
        cls = r.get("class")
        if type(cls) is dict:
            return R4
        if type(cls) is list or "actualPeriod" in r or "virtualService" in r:
            return R5
        if "period" in r or "hospitalization" in r:
            return R4
    elif rtype in ("MedicationRequest", "MedicationStatement", "MedicationAdministration"):
        if "medicationCodeableConcept" in r or "medicationReference" in r:
            return R4
        med = r.get("medication")
        if type(med) is dict and ("concept" in med or "reference" in med):
            return R5
    elif rtype == "Procedure":
        if any(k.startswith("performed") for k in r):
            return R4
        if any(k.startswith("occurrence") for k in r):
            return R5
    elif rtype in ("Condition", "AllergyIntolerance"):
        if "asserter" in r or "recorder" in r:
            return R4
        if "participant" in r:
            return R5
    elif rtype == "Observation":
        if "triggeredBy" in r or "instantiatesCanonical" in r:
            return R5
    elif rtype == "Patient":
        for link in r.get("link") or ():
            if type(link) is dict and link.get("type") == "seealso":
                return None
    return None


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
