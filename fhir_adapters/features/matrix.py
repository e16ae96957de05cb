"""The output of feature extraction: a float32 matrix plus what it is made of.

``patient_keys`` are pseudonymous but still identify rows at the site, so
they stay local: :meth:`FeatureMatrix.summary` (what may be printed, logged
or audited) carries counts and the spec hash only, and :meth:`save` writes
keys only when asked to.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fhir_adapters.errors import FhirAdapterError
from fhir_adapters.features.warnings import warning_counts
from fhir_adapters.quality import QualityReport


@dataclass
class ExtractionReport:
    """Counts of one extraction run (safe to share through :meth:`summary`)."""

    spec_hash: str
    quality: QualityReport
    patients_seen: int = 0
    patients: int = 0
    excluded_opt_out: int = 0
    excluded_no_index: int = 0
    rows_by_view: dict[str, int] = field(default_factory=dict)
    matched_rows: dict[str, int] = field(default_factory=dict)
    concept_mapped_rows: int = 0
    converted_values: int = 0
    spec_fhir_version: str | None = None
    time_fallback_rows: int = 0
    rows_of_quarantined_patients: int = 0  # left out with their invalid Patient
    medication_rows_resolved: int = 0
    warnings: list[dict[str, str]] = field(default_factory=list)

    @property
    def fhir_version_mismatch(self) -> bool:
        """True when a source's detected release differs from the one the spec's views target.

        Validation always follows the data; a mismatch means some view paths
        (e.g. ``Encounter.class``) may not mean what the spec author assumed.
        """
        if self.spec_fhir_version is None:
            return False
        target = "R5" if self.spec_fhir_version.upper().startswith(("R5", "5")) else "R4"
        if self.quality.release_conflicts:
            return True
        return any(v != target for v in self.quality.fhir_versions.values())

    def summary(self) -> dict[str, Any]:
        return {
            "spec_hash": self.spec_hash,
            "patients_seen": self.patients_seen,
            "patients": self.patients,
            "excluded_opt_out": self.excluded_opt_out,
            "excluded_no_index": self.excluded_no_index,
            "rows_by_view": dict(self.rows_by_view),
            "matched_rows": dict(self.matched_rows),
            "concept_mapped_rows": self.concept_mapped_rows,
            "converted_values": self.converted_values,
            "spec_fhir_version": self.spec_fhir_version,
            "fhir_version_mismatch": self.fhir_version_mismatch,
            "time_fallback_rows": self.time_fallback_rows,
            "rows_of_quarantined_patients": self.rows_of_quarantined_patients,
            "medication_rows_resolved": self.medication_rows_resolved,
            "warnings": [dict(w) for w in self.warnings],
            "warnings_by_kind": warning_counts(self.warnings),
            "quality": self.quality.summary(),
        }


@dataclass
class FeatureMatrix:
    """``X`` (n x f, float32, NaN = missing), ``y`` (n, float32) and their provenance."""

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]
    patient_keys: list[str]
    counts: dict[str, int]
    missingness: dict[str, float]
    report: ExtractionReport
    label_name: str | None = None

    @property
    def spec_hash(self) -> str:
        return self.report.spec_hash

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    def summary(self) -> dict[str, Any]:
        """Cohort summary: counts and missingness, no keys, no values."""
        positives = int(np.nansum(self.y)) if self.y is not None else None
        return {
            "spec_hash": self.spec_hash,
            "rows": self.n_rows,
            "features": len(self.feature_names),
            "label": self.label_name,
            "label_positive": positives,
            "excluded_opt_out": self.report.excluded_opt_out,
            "quarantined": self.report.quality.problems,
            "per_feature": {
                name: {"count": self.counts[name], "missing": round(self.missingness[name], 6)}
                for name in self.feature_names
            },
            "report": self.report.summary(),
        }

    def save(self, path: str | Path, *, include_keys: bool = False) -> Path:
        """Write ``.npz`` (X, y, feature_names) or ``.csv``; keys only if asked."""
        p = Path(path)
        suffix = p.suffix.lower()
        names = np.array(self.feature_names)
        if suffix == ".npz":
            arrays: dict[str, Any] = {"X": self.X, "feature_names": names}
            if self.y is not None:
                arrays["y"] = self.y
            if include_keys:
                arrays["patient_keys"] = np.array(self.patient_keys)
            np.savez_compressed(p, **arrays)
        elif suffix == ".csv":
            with p.open("w", newline="") as fh:
                writer = csv.writer(fh)
                header = (["patient_key"] if include_keys else []) + self.feature_names
                if self.y is not None:
                    header.append(self.label_name or "label")
                writer.writerow(header)
                for i in range(self.n_rows):
                    row: list[Any] = [self.patient_keys[i]] if include_keys else []
                    row.extend("" if math.isnan(v) else repr(float(v)) for v in self.X[i])
                    if self.y is not None:
                        row.append(repr(float(self.y[i])))
                    writer.writerow(row)
        else:
            raise FhirAdapterError(
                f"unsupported matrix format {suffix or '(none)'}; use .npz or .csv",
                code="FEATURE_OUTPUT_FORMAT",
            )
        return p
