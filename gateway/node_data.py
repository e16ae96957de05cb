"""The hospital's FHIR source as the gateway sees it: status and aggregate dry runs.

Domain work stays in ``fhir_adapters`` (streams, views, features) and
``permits`` (opt-out registries); this module wires them to the node's
configuration and reduces every answer to counts, suppressed below the
disclosure floor (:mod:`gateway.disclosure`). Nothing row-level, no
identifiers, no values ever leave through here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from gateway.config import NodeSettings
from gateway.disclosure import suppress_counts, suppress_pair
from gateway.errors import BadRequestError, DisclosureError, UnavailableError

NETWORK_KINDS = frozenset({"search", "export"})


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.name.endswith((".ndjson", ".ndjson.gz", ".json"))
    )


class NodeData:
    """Reads the configured FHIR source and opt-out registry on demand (sync; run off-loop)."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        #: For search/export sources: the current local snapshot folder (``gateway.fhir_sync``).
        self.snapshot: Callable[[], Path | None] | None = None

    # ------------------------------------------------------------------ status
    def file_status(self) -> dict[str, Any]:
        fhir = self.settings.fhir
        out: dict[str, Any] = {"kind": fhir.kind, "configured": fhir.path is not None}
        if fhir.path is None:
            out["reachable"] = False
            return out
        if not fhir.path.exists():
            out["reachable"] = False
            return out
        files = _files(fhir.path)
        out.update(reachable=True, files=len(files), bytes=sum(f.stat().st_size for f in files))
        return out

    async def status(self) -> dict[str, Any]:
        fhir = self.settings.fhir
        if fhir.kind not in NETWORK_KINDS:
            return self.file_status()
        from fhir_adapters.sources.capability import parse_capability
        from fhir_adapters.sources.http import origin_of

        out: dict[str, Any] = {"kind": fhir.kind, "configured": bool(fhir.base_url)}
        if not fhir.base_url:
            out["reachable"] = False
            return out
        out["origin"] = origin_of(fhir.base_url)
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(
                    fhir.base_url.rstrip("/") + "/metadata",
                    headers={"Accept": "application/fhir+json"},
                ) as resp,
            ):
                if resp.status != 200:
                    out.update(reachable=False, http_status=resp.status)
                    return out
                body = await resp.json(content_type=None)
            out.update(reachable=True, capability=parse_capability(body).as_dict())
        except Exception as exc:  # status reports, it does not raise
            code = getattr(exc, "code", None)
            out.update(reachable=False, error=code if isinstance(code, str) else type(exc).__name__)
        return out

    async def check_ready(self) -> None:
        status = await self.status()
        if not status.get("reachable"):
            raise UnavailableError("the FHIR source is not reachable", code="FHIR_UNAVAILABLE")

    # ------------------------------------------------------------------ opt-out
    def opt_out(self) -> Any:
        """The configured registry; none configured means no one has opted out at this site."""
        from permits.optout import ConsentOptOutRegistry, NoOptOut, PseudonymOptOutRegistry

        path = self.settings.opt_out
        if path is None:
            return NoOptOut()
        if not path.exists():
            raise UnavailableError("the opt-out registry is not readable", code="OPTOUT_ERROR")
        if path.suffix in {".json", ".ndjson"} or path.name.endswith(".ndjson.gz") or path.is_dir():
            from fhir_adapters.stream import open_stream

            return ConsentOptOutRegistry.from_resources(open_stream(path))
        return PseudonymOptOutRegistry.from_file(path)

    # ------------------------------------------------------------------ dry run
    def dry_run(self, spec_document: Mapping[str, Any]) -> dict[str, Any]:
        """Run a feature specification on the local data; return suppressed counts only."""
        from fhir_adapters.features.spec import FeatureSpec
        from fhir_adapters.stream import open_stream

        fhir = self.settings.fhir
        path = fhir.path
        if fhir.kind in NETWORK_KINDS:
            if self.snapshot is None:
                raise BadRequestError(
                    "dry runs read the local files; export the source first",
                    code="DRY_RUN_SOURCE_UNSUPPORTED",
                )
            path = self.snapshot()  # resolved once: this run reads one snapshot version
            if path is None:
                raise UnavailableError(
                    "no local FHIR snapshot yet (the first sync has not succeeded)",
                    code="FHIR_SNAPSHOT_MISSING",
                )
        if path is None or not path.exists():
            raise UnavailableError(
                "the FHIR source is not configured or not readable", code="FHIR_UNAVAILABLE"
            )
        spec = FeatureSpec.from_dict(spec_document)
        floor = self.settings.disclosure_floor
        stream = open_stream(path, validate="off")
        matrix = _extract(spec, stream, self.opt_out())
        return summarise(matrix, spec.canonical_hash(), floor)


def _extract(spec: Any, stream: Any, opt_out: Any) -> Any:
    from fhir_adapters.features import extract_features

    return extract_features(spec, stream, opt_out=opt_out, min_rows=0)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def summarise(matrix: Any, spec_hash: str, floor: int, quality: Any = None) -> dict[str, Any]:
    """Pure: a feature matrix -> the counts a dry run may show (all >= floor or withheld)."""
    x = np.asarray(matrix.X, dtype=np.float64)
    patients = int(x.shape[0])
    if patients < floor:
        raise DisclosureError(f"the cohort is below the disclosure floor of {floor}")
    report = getattr(matrix, "report", None)
    excluded = _count(getattr(report, "excluded_opt_out", 0))
    quality = quality if quality is not None else getattr(report, "quality", None)
    quarantined = _count(getattr(quality, "problems", 0))
    withheld: list[str] = []
    features: dict[str, dict[str, int | None]] = {}
    for j, name in enumerate(matrix.feature_names):
        present = int(np.count_nonzero(~np.isnan(x[:, j])))
        shown, missing = suppress_pair(present, patients - present, floor)
        if shown is None:
            withheld.append(f"features.{name}")
        features[str(name)] = {"present": shown, "missing": missing}
    label: dict[str, int | None] = {"positive": None, "negative": None}
    y = getattr(matrix, "y", None)
    if y is not None and len(y) == patients:
        positive = int(np.count_nonzero(np.asarray(y, dtype=np.float64) >= 0.5))
        label["positive"], label["negative"] = suppress_pair(positive, patients - positive, floor)
        if label["positive"] is None:
            withheld.append("label")
    totals, small = suppress_counts(
        {"excluded_opt_out": excluded, "quarantined": quarantined}, floor
    )
    withheld.extend(small)
    return {
        "spec_hash": spec_hash,
        "disclosure_floor": floor,
        "patients": patients,
        **totals,
        "features": features,
        "label": label,
        "withheld": withheld,
    }


__all__ = ["NodeData", "summarise"]
