"""Warnings about a computed matrix: columns that cannot be what the spec author meant.

Why after extraction: these are not errors in the data or the spec on their
own, but each is almost always one. A feature that is NaN for every patient
usually has a mistyped code; a constant feature carries no information; a
feature equal to the label for every patient leaks the label (its codes are
the label's own). They are reported by name and kind (no values) in the
summary, the JSON report and the audit counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

ALL_MISSING = "all_missing"
CONSTANT = "constant"
EQUALS_LABEL = "equals_label"
WARNING_KINDS = (ALL_MISSING, CONSTANT, EQUALS_LABEL)


def feature_warnings(
    X: np.ndarray, y: np.ndarray | None, names: Sequence[str]
) -> list[dict[str, str]]:
    """``[{"feature": name, "kind": ...}]`` for all-NaN, constant and label-equal columns."""
    out: list[dict[str, str]] = []
    n = X.shape[0]
    if n == 0:
        return out
    for j, name in enumerate(names):
        col = X[:, j].astype(np.float64)
        present = ~np.isnan(col)
        if not present.any():
            out.append({"feature": name, "kind": ALL_MISSING})
            continue
        vals = col[present]
        if n > 1 and bool(present.all()) and float(vals.min()) == float(vals.max()):
            out.append({"feature": name, "kind": CONSTANT})
            continue
        if y is not None and bool(present.all()) and np.array_equal(col, y.astype(np.float64)):
            out.append({"feature": name, "kind": EQUALS_LABEL})
    return out


def warning_counts(warnings: Iterable[Mapping[str, str]]) -> dict[str, int]:
    counts = Counter(w["kind"] for w in warnings)
    return {k: counts.get(k, 0) for k in WARNING_KINDS}
