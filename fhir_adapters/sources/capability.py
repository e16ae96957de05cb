"""What a server says it can do, from its CapabilityStatement (``GET [base]/metadata``).

Read once per :class:`~fhir_adapters.sources.http.FhirClient`. We learn the
FHIR version (R4/R4B/R5 decide how resources are read downstream) and which
``$export`` levels are declared, so a kick-off against a server that never
offered it fails with a clear message instead of a confusing 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_adapters.errors import FhirProtocolError

BULK_DATA_CAPABILITY = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
_EXPORT_NAMES = {"export", "patient-export", "group-export", "system-export"}


def fhir_release(version: str) -> str:
    """``"4.0.1"`` -> ``"R4"``, ``"4.3.0"`` -> ``"R4B"``, ``"5.0.0"`` -> ``"R5"``."""
    parts = version.split(".")
    if parts[:1] == ["4"]:
        return "R4B" if parts[1:2] == ["3"] else "R4"
    if parts[:1] == ["5"]:
        return "R5"
    if parts[:1] == ["6"]:
        return "R6"
    return "unknown"


@dataclass(frozen=True)
class ServerCapability:
    fhir_version: str
    release: str
    software: str | None
    export_levels: frozenset[str]
    resource_types: frozenset[str]
    formats: frozenset[str]
    declares_bulk_data: bool

    @property
    def supports_export(self) -> bool:
        return bool(self.export_levels)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fhir_version": self.fhir_version,
            "release": self.release,
            "software": self.software,
            "export_levels": sorted(self.export_levels),
            "resource_types": len(self.resource_types),
            "formats": sorted(self.formats),
            "declares_bulk_data": self.declares_bulk_data,
        }


def _operation_names(ops: object) -> set[str]:
    names: set[str] = set()
    if isinstance(ops, list):
        for op in ops:
            if isinstance(op, Mapping):
                name = op.get("name")
                definition = op.get("definition")
                if isinstance(name, str):
                    names.add(name.lstrip("$").lower())
                if (
                    isinstance(definition, str)
                    and "export" in definition.rsplit("/", 1)[-1].lower()
                ):
                    names.add("export")
    return names


def parse_capability(body: object) -> ServerCapability:
    """Pure: CapabilityStatement JSON -> :class:`ServerCapability` (raises on non-capability)."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "CapabilityStatement":
        raise FhirProtocolError("/metadata did not return a CapabilityStatement")
    version = str(body.get("fhirVersion") or "")
    software = body.get("software")
    software_name = None
    if isinstance(software, Mapping):
        software_name = " ".join(
            str(software[k]) for k in ("name", "version") if isinstance(software.get(k), str)
        )
    instantiates = body.get("instantiates") or []
    declares = isinstance(instantiates, list) and any(
        isinstance(i, str) and i.split("|")[0] == BULK_DATA_CAPABILITY for i in instantiates
    )
    levels: set[str] = set()
    types: set[str] = set()
    rests = body.get("rest") or []
    for rest in rests if isinstance(rests, list) else []:
        if not isinstance(rest, Mapping) or rest.get("mode", "server") != "server":
            continue
        if _operation_names(rest.get("operation")) & _EXPORT_NAMES:
            levels.add("system")
        for resource in rest.get("resource") or []:
            if not isinstance(resource, Mapping) or not isinstance(resource.get("type"), str):
                continue
            rtype = resource["type"]
            types.add(rtype)
            names = _operation_names(resource.get("operation"))
            if rtype == "Patient" and names & _EXPORT_NAMES:
                levels.add("patient")
            if rtype == "Group" and names & _EXPORT_NAMES:
                levels.add("group")
    if declares and not levels:
        # The IG's CapabilityStatement covers all three levels.
        levels = {"system", "patient", "group"}
    formats = body.get("format") or []
    return ServerCapability(
        fhir_version=version,
        release=fhir_release(version),
        software=software_name or None,
        export_levels=frozenset(levels),
        resource_types=frozenset(types),
        formats=frozenset(f for f in formats if isinstance(f, str))
        if isinstance(formats, list)
        else frozenset(),
        declares_bulk_data=declares,
    )
