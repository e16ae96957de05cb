"""Checks a feature specification must pass before any data is read.

Why at load: a code in a mistyped system, a unit that is not UCUM or a
ConceptMap that maps nothing does not fail later; it makes a feature NaN (or
a label 0) for every patient, which looks like data. So each is refused
when the spec is loaded, with the place in the spec that is wrong:

* code systems: a known terminology (LOINC, SNOMED CT, ICD-10, ATC, ...), a
  family of HL7/national code systems, an ``urn:oid:``, or a system a
  ConceptMap in the spec names (a site's local codes);
* feature units: valid UCUM and written as FHIR data write them (``mg/dL``,
  not ``mg/dl``: UCUM accepts both liters, but a unit column holding
  ``mg/dL`` is what the data carry and ``mg/dl`` is almost always a typo for
  a non-UCUM free-text unit);
* ConceptMaps: at least one mapping that the extractor would use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from fhir_adapters.errors import FeatureSpecError

KNOWN_SYSTEMS = frozenset(
    {
        "http://loinc.org",
        "http://snomed.info/sct",
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://hl7.org/fhir/sid/icd-9-cm",
        "http://id.who.int/icd/release/11/mms",
        "http://www.whocc.no/atc",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://hl7.org/fhir/sid/ndc",
        "http://hl7.org/fhir/sid/cvx",
        "http://unitsofmeasure.org",
        "http://www.ama-assn.org/go/cpt",
        "http://www.cms.gov/Medicare/Coding/ICD10",
        "urn:iso:std:iso:3166",
        "urn:ietf:bcp:47",
    }
)
# families whose members are all real code systems (HL7 terminology, national bases)
KNOWN_SYSTEM_PREFIXES = (
    "http://terminology.hl7.org/CodeSystem/",
    "http://hl7.org/fhir/",
    "https://fhir.ee/CodeSystem/",
    "https://fhir.ee/sid/",
    "http://fhir.de/CodeSystem/",
    "urn:oid:",
)


def known_system(system: str, extra: Iterable[str] = ()) -> bool:
    return system in KNOWN_SYSTEMS or system.startswith(KNOWN_SYSTEM_PREFIXES) or system in extra


def concept_map_systems(maps: Iterable[Any]) -> set[str]:
    """Source and target systems named by ConceptMaps (a site's local systems are declared there)."""
    out: set[str] = set()
    for cm in maps:
        for group in cm.get("group") or () if isinstance(cm, dict) else ():
            if isinstance(group, dict):
                for key in ("source", "target"):
                    if isinstance(group.get(key), str):
                        out.add(group[key])
    return out


def check_systems(codes: Iterable[tuple[str, tuple[str, str]]], maps: Iterable[Any]) -> None:
    """``codes``: (where, (system, code)); raises FeatureSpecError on an unknown system."""
    extra = concept_map_systems(maps)
    for where, (system, _code) in codes:
        if not known_system(system, extra):
            raise FeatureSpecError(
                f"{where}: unknown code system {system[:80]!r} (not a known terminology and "
                "not named by a ConceptMap in the spec)",
                code="FEATURE_SPEC_UNKNOWN_SYSTEM",
            )


@lru_cache(maxsize=1)
def _ucum_parser() -> Any:
    from ucumvert import get_ucum_parser

    return get_ucum_parser()


_LOWER_LITER = re.compile(r"(?<![A-Za-z\[])([munpfcd]?)l(?![a-zA-Z\]])")


@lru_cache(maxsize=256)
def check_ucum(unit: str, where: str) -> None:
    """Raise FeatureSpecError unless ``unit`` is UCUM as FHIR data write it."""
    try:
        _ucum_parser().parse(unit)
    except Exception as exc:  # lark errors
        raise FeatureSpecError(
            f"{where}: {unit[:40]!r} is not a UCUM unit", code="FEATURE_SPEC_UNIT"
        ) from exc
    fixed = _LOWER_LITER.sub(lambda m: m.group(1) + "L", unit)
    if fixed != unit:
        raise FeatureSpecError(
            f"{where}: write {fixed!r}, not {unit!r} (UCUM codes in FHIR data use 'L' for liter)",
            code="FEATURE_SPEC_UNIT",
        )


def check_concept_maps(maps: Iterable[Any]) -> None:
    """A ConceptMap in a spec must map at least one code (an empty one changes nothing)."""
    for i, cm in enumerate(maps):
        groups = cm.get("group") if isinstance(cm, dict) else None
        elements = [e for g in groups or () if isinstance(g, dict) for e in g.get("element") or ()]
        if not elements:
            raise FeatureSpecError(
                f"conceptMaps[{i}]: maps no codes (empty ConceptMap)",
                code="FEATURE_SPEC_EMPTY_VALUESET",
            )
