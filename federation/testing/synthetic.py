"""Synthetic, non-IID site feature matrices for tests and benchmarks.

Used until (and besides) the FHIR synthetic cohort: each site gets its own
case mix (shifted feature means, different prevalence, different size), the
label follows one shared risk model, so pooling helps and sites differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SyntheticSplit:
    sites: dict[str, tuple[np.ndarray, np.ndarray]]
    test: tuple[np.ndarray, np.ndarray]
    feature_names: tuple[str, ...]


def risk_cohort(
    site_ids: Sequence[str],
    *,
    patients: int,
    n_features: int = 8,
    n_classes: int = 2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> SyntheticSplit:
    rng = np.random.default_rng(seed)
    names = tuple(f"f{i}" for i in range(n_features))
    weights = rng.normal(size=(n_features, max(1, n_classes if n_classes > 2 else 1)))
    sizes = rng.dirichlet(np.full(len(site_ids), 2.0)) * patients
    sizes = np.maximum(sizes.astype(int), 100)

    def draw(n: int, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = rng.normal(size=(n, n_features)) + shift
        X[:, 0] = np.abs(X[:, 0]) * 10 + 40  # an age-like column
        logits = X @ weights
        logits[:, 0] += 0.8 * np.sin(X[:, 1] * 2) + 0.5 * (X[:, 2] > 0.5) * X[:, 3]
        if n_classes == 2:
            p = 1 / (1 + np.exp(-(logits[:, 0] - logits[:, 0].mean() - 1.0 - (X[:, 0] - 48) / 10)))
            y = (rng.random(n) < p).astype(np.float32)
        else:
            # standardise per class: otherwise the age-like column decides alone (one class)
            z = (logits - logits.mean(axis=0)) / (logits.std(axis=0) + 1e-9)
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            y = np.array([rng.choice(n_classes, p=row) for row in p], dtype=np.float32)
        return X.astype(np.float32), y

    sites: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    test_X, test_y = [], []
    for site, n in zip(site_ids, sizes, strict=True):
        shift = rng.normal(scale=0.6, size=n_features)
        X, y = draw(int(n), shift)
        n_test = int(len(X) * test_fraction)
        sites[site] = (X[n_test:], y[n_test:])
        test_X.append(X[:n_test])
        test_y.append(y[:n_test])
    return SyntheticSplit(sites, (np.vstack(test_X), np.concatenate(test_y)), names)


def write_site_arrays(split: SyntheticSplit, root: str | Path) -> dict[str, Path]:
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    paths = {}
    for site, (X, y) in split.sites.items():
        path = base / f"{site}.npz"
        np.savez(path, X=X, y=y, feature_names=np.array(split.feature_names))
        paths[site] = path
    return paths
