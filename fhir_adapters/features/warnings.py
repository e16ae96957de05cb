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
PATH_NOT_IN_RELEASE = "path_not_in_release"
WARNING_KINDS = (ALL_MISSING, CONSTANT, EQUALS_LABEL, PATH_NOT_IN_RELEASE)


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


def release_warnings(
    views: Mapping[str, Mapping[str, object]], stated: str | None, data_releases: Iterable[str]
) -> list[dict[str, str]]:
    """Views whose paths do not exist in the release the data turned out to be.

    When the spec states a release its views are checked at load (an error);
    without one, a view written for R4 read on R5 data (``Encounter.class.code``)
    would give nulls with "problems: none". Here each view is checked against
    each release the sources showed, and a mismatch is named (view, not value).
    """
    if stated is not None:
        return []
    from fhir_adapters.errors import ViewDefinitionError
    from fhir_adapters.view_paths import check_view_paths

    releases = sorted({r for v in data_releases for r in v.split("+")} & {"R4", "R5"})
    out: list[dict[str, str]] = []
    for name, view in views.items():
        for release in releases:
            try:
                check_view_paths(view, release)
            except ViewDefinitionError:
                out.append({"feature": f"view:{name}:{release}", "kind": PATH_NOT_IN_RELEASE})
    return out
