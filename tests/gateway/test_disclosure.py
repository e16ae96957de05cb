"""Small-count suppression: nothing between 0 and the floor, and no complement gives it back."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.disclosure import suppress_counts, suppress_pair
from gateway.errors import DisclosureError
from gateway.node_data import summarise


@given(st.integers(0, 200), st.integers(0, 200), st.integers(5, 20))
def test_pairs_never_reveal_a_small_count(a: int, b: int, floor: int) -> None:
    shown = suppress_pair(a, b, floor)
    for n in shown:
        assert n is None or n == 0 or n >= floor
    if None not in shown:
        assert shown == (a, b)
    else:
        assert shown == (None, None)  # withheld together: total - shown cannot recover it


def test_independent_counts() -> None:
    shown, withheld = suppress_counts({"a": 0, "b": 3, "c": 5}, 5)
    assert shown == {"a": 0, "b": None, "c": 5}
    assert withheld == ["b"]


@dataclass
class Report:
    excluded_opt_out: int = 0
    quality: object = field(default_factory=lambda: type("Q", (), {"problems": 0})())


@dataclass
class Matrix:
    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]
    report: Report = field(default_factory=Report)


def test_summary_withholds_small_cells_and_their_complements() -> None:
    x = np.full((20, 3), np.nan, dtype=np.float32)
    x[:, 0] = 1.0  # present for all
    x[:3, 1] = 1.0  # present for 3: small
    x[:18, 2] = 1.0  # missing for 2: small complement
    y = np.zeros(20, dtype=np.float32)
    y[:2] = 1  # 2 positives
    out = summarise(
        Matrix(x, y, ["all", "rare", "common"], Report(excluded_opt_out=4)), "sha256:" + "0" * 64, 5
    )
    assert out["features"]["all"] == {"present": 20, "missing": 0}
    assert out["features"]["rare"] == {"present": None, "missing": None}
    assert out["features"]["common"] == {"present": None, "missing": None}
    assert out["label"] == {"positive": None, "negative": None}
    assert out["excluded_opt_out"] is None
    assert set(out["withheld"]) == {"features.rare", "features.common", "label", "excluded_opt_out"}


def test_cohort_below_floor_is_refused() -> None:
    x = np.ones((4, 1), dtype=np.float32)
    with pytest.raises(DisclosureError):
        summarise(Matrix(x, None, ["f"]), "sha256:" + "0" * 64, 5)
