"""The rows a reference model may train on and is scored on, exactly as the sites split them.

Why: "federated vs centralized vs each site alone" is only a fair comparison
when every model is scored on the same held-out patients and none of them was
trained on those patients. The demo and the bench therefore build their
reference data with the sites' own code path: the same
:class:`~federation.adapters.FhirSource` (and feature cache) and the same
:func:`federation.site.split_rows` under the job's split key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from federation.adapters import FhirSource
from federation.ports import SiteDataset
from federation.site import Split, split_rows


@dataclass(frozen=True)
class ReferenceSite:
    """One site's rows and its side of the job's held-out split."""

    data: SiteDataset
    split: Split

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.X[self.split.train], self.data.y[self.split.train]

    @property
    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.X[self.split.evaluate], self.data.y[self.split.evaluate]

    def held_out_keys(self) -> set[str]:
        return {self.data.patient_keys[i] for i in self.split.evaluate}


def reference_site(
    folder: str | Path,
    spec: Mapping[str, Any],
    spec_hash: str,
    *,
    split_key: str,
    eval_fraction: float,
    cache_dir: str | Path | None = None,
) -> ReferenceSite:
    """A site's FHIR folder as the site's ClientApp sees it, split as the job splits it."""
    source = FhirSource(str(folder), cache_dir=str(cache_dir) if cache_dir else None)
    data = source.load(spec, spec_hash=spec_hash)
    return ReferenceSite(data, split_rows(data, eval_fraction, split_key))


def pooled_held_out(sites: Mapping[str, ReferenceSite]) -> tuple[np.ndarray, np.ndarray]:
    """Every site's held-out rows, stacked: the one set every model is scored on."""
    parts = [s.held_out for s in sites.values()]
    return np.vstack([X for X, _ in parts]), np.concatenate([y for _, y in parts])


__all__ = ["ReferenceSite", "pooled_held_out", "reference_site"]
