"""Local codes to standard codes through FHIR ConceptMap resources.

Why ConceptMaps: a hospital that codes HbA1c as ``LAB-HBA1C`` in its own
system publishes how that maps to LOINC as a ConceptMap, the FHIR-standard
artefact a terminology server and the HDAB can both read. The feature recipe
asks "is this coding one of the feature's codes?"; :class:`ConceptMapIndex`
answers it for mapped local codes too.

Only mappings that keep the meaning safe for feature matching are used: the
target is equivalent to, or broader than, the source (R4 ``equivalence``
``equivalent|equal|wider|subsumes``; R5 ``relationship``
``equivalent|source-is-narrower-than-target``). A local code for "HbA1c in
whole blood by HPLC" may count as HbA1c; the reverse may not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fhir_adapters.errors import ConceptMapError

SAFE_R4 = frozenset({"equivalent", "equal", "wider", "subsumes"})
SAFE_R5 = frozenset({"equivalent", "source-is-narrower-than-target"})

Coding = tuple[str, str]  # (system, code)


class ConceptMapIndex:
    """``(system, code) -> {(target system, target code), ...}`` from ConceptMaps."""

    def __init__(self) -> None:
        self._map: dict[Coding, set[Coding]] = {}
        self.maps: list[str] = []

    def __len__(self) -> int:
        return len(self._map)

    @classmethod
    def from_resources(cls, resources: Iterable[Mapping[str, Any]]) -> ConceptMapIndex:
        index = cls()
        for resource in resources:
            index.add(resource)
        return index

    def add(self, resource: Mapping[str, Any]) -> None:
        """Index one ConceptMap (R4 or R5 shape)."""
        if resource.get("resourceType") != "ConceptMap":
            raise ConceptMapError("not a ConceptMap resource")
        groups = resource.get("group")
        if not isinstance(groups, list):
            raise ConceptMapError("ConceptMap without group")
        self.maps.append(str(resource.get("url") or resource.get("id") or "anonymous"))
        for g_index, group in enumerate(groups):
            if not isinstance(group, dict):
                raise ConceptMapError(f"ConceptMap.group[{g_index}] is not an object")
            source = group.get("source")
            target = group.get("target")
            if not isinstance(source, str) or not isinstance(target, str):
                raise ConceptMapError(
                    f"ConceptMap.group[{g_index}] needs source and target systems"
                )
            for element in group.get("element") or ():
                code = element.get("code") if isinstance(element, dict) else None
                if not isinstance(code, str):
                    raise ConceptMapError(f"ConceptMap.group[{g_index}].element without code")
                for tgt in element.get("target") or ():
                    if not isinstance(tgt, dict) or not isinstance(tgt.get("code"), str):
                        continue
                    if _safe(tgt):
                        self._map.setdefault((source, code), set()).add((target, tgt["code"]))

    def targets(self, system: str | None, code: str | None) -> set[Coding]:
        if system is None or code is None:
            return set()
        return self._map.get((system, code), set())

    def expand(self, codes: Iterable[Coding]) -> set[Coding]:
        """Every coding that counts as one of ``codes``: the codes plus mapped sources."""
        wanted = set(codes)
        out = set(wanted)
        for src, tgts in self._map.items():
            if tgts & wanted:
                out.add(src)
        return out


def _safe(target: Mapping[str, Any]) -> bool:
    rel = target.get("relationship")
    if isinstance(rel, str):
        return rel in SAFE_R5
    eq = target.get("equivalence")
    if isinstance(eq, str):
        return eq in SAFE_R4
    return False
