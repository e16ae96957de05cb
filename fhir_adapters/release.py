"""FHIR releases: which one a source, a spec or a resource is, and what each release has.

Why a module of its own: the release decides how a resource is validated and
what a path means (``Encounter.class`` is a Coding in R4 and a list of
CodeableConcepts in R5). It is decided, strongest first, by what the caller
states (a spec's or view's ``fhirVersion``), by what the source recorded (a
Bulk export's state file, the server's CapabilityStatement), and only then
per resource from the data itself (:func:`detect_version`).
"""

from __future__ import annotations

import contextlib
import json
import re
from functools import lru_cache
from importlib import resources as importlib_resources
from typing import Any

from fhir_adapters.errors import ValidationModeError

R4 = "R4"
R5 = "R5"
DEFAULT_VERSION = R4


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


_VERSION_RE = re.compile(
    r"(R4B?|4(\.[0-3](\.\d+)?(-[A-Za-z0-9.]+)?)?)|(R5|5(\.0(\.\d+)?(-[A-Za-z0-9.]+)?)?)"
)


def normalize_version(value: str) -> str:
    """``4.0.1``, ``4.3.0``, ``R4B`` -> ``R4``; ``5.0.0``, ``R5`` -> ``R5``; else an error.

    Strict on purpose: ``R6``, ``6.0.0-ballot`` or ``banana`` must not be read
    as some release; a spec or view naming one is refused.
    """
    v = value.strip().upper()
    m = _VERSION_RE.fullmatch(v)
    if m is None:
        raise ValidationModeError(f"unsupported FHIR version {value[:20]!r}; use R4 or R5")
    return R4 if m.group(1) else R5


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
    if declared is not None and isinstance(declared, str):
        with contextlib.suppress(ValidationModeError):  # unknown label: look further
            return normalize_version(declared)
    meta = resource.get("meta")
    if meta is not None and type(meta) is dict:
        for profile in meta.get("profile") or ():
            if isinstance(profile, str):
                shown = _profile_release(profile)
                if shown is not None:
                    return shown
    rtype = resource.get("resourceType")
    only = _ONLY_IN.get(rtype) if _ONLY_IN else _only_in().get(rtype)
    if only is not None:
        return only
    if rtype in _SHAPE_TYPES:
        return _structural_marker(rtype, resource)
    return None


_ONLY_IN: dict[Any, str] = {}
_SHAPE_TYPES = frozenset(
    {
        "Encounter",
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
        "Procedure",
        "Condition",
        "AllergyIntolerance",
        "Observation",
        "Patient",
    }
)


def _only_in() -> dict[Any, str]:
    """Resource type -> the one release that has it (filled once)."""
    types = resource_types()
    for rel, other in ((R4, R5), (R5, R4)):
        for t in types[rel] - types[other]:
            _ONLY_IN[t] = rel
    return _ONLY_IN


@lru_cache(maxsize=4096)
def _profile_release(profile: str) -> str | None:
    if any(m in profile for m in _R5_PROFILE_MARKERS):
        return R5
    if any(m in profile for m in _R4_PROFILE_MARKERS):
        return R4
    return None


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
