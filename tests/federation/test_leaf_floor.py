"""The per-leaf disclosure floor is re-checked on the data, not only set as a parameter.

``effective_params`` raises ``min_child_weight`` to the permit's floor, and
``train_round`` then counts the rows in every leaf of the new trees. These tests
pin that second check: a booster that breaks the floor is refused with
``InsufficientDataError`` even when the parameter guard is bypassed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from federation import site, trees
from federation.errors import InsufficientDataError
from federation.job import BoosterParams
from federation.ports import AccessTerms, SiteDataset

FLOOR = 40


def _data(n: int = 400, seed: int = 3) -> SiteDataset:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return SiteDataset(X=X, y=y, feature_names=("a", "b", "c"), patients=n)


def _terms(floor: int = FLOOR) -> AccessTerms:
    return AccessTerms(
        permit_jti="p-1",
        spec_hash="sha256:" + "0" * 64,
        strategies=frozenset({"bagging"}),
        operations=frozenset({"train", "evaluate"}),
        outputs=frozenset({"model", "aggregate_metrics"}),
        max_rounds=5,
        max_depth=6,
        min_rows_per_site=50,
        min_rows_per_leaf=floor,
    )


def _empty() -> trees.Pack:
    return trees.empty_pack(
        objective="binary:logistic",
        num_feature=3,
        num_class=0,
        base_score=[0.5],
        feature_names=["a", "b", "c"],
    )


def _leaf_counts(pack: trees.Pack, data: SiteDataset) -> np.ndarray:
    booster = site.booster_from_pack(pack)
    assert booster is not None
    dm = xgb.DMatrix(data.X, feature_names=list(data.feature_names), nthread=1)
    leaves = booster.predict(dm, pred_leaf=True).reshape(data.rows, -1)
    return np.array([np.unique(col, return_counts=True)[1].min() for col in leaves.T])


def test_a_normal_round_keeps_every_leaf_at_or_above_the_floor() -> None:
    data = _data()
    rows = np.arange(data.rows)
    params = BoosterParams(max_depth=6, min_child_weight=0.0, eta=0.5)
    pack = site.train_round(data, rows, _empty(), params, _terms())
    assert len(pack["trees"]) == 1
    full = trees.append_trees(_empty(), [(pack, 1.0)])
    assert _leaf_counts(full, data).min() >= FLOOR


def test_a_booster_below_the_floor_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bypass the parameter guard: the data check alone must refuse the trees."""
    real = site.effective_params

    def loosened(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = real(*args, **kwargs)
        out["min_child_weight"] = 0.0
        return out

    monkeypatch.setattr(site, "effective_params", loosened)
    data = _data()
    params = BoosterParams(max_depth=6, min_child_weight=0.0, eta=0.5)
    with pytest.raises(InsufficientDataError) as err:
        site.train_round(data, np.arange(data.rows), _empty(), params, _terms())
    assert err.value.reason == "min_rows_per_leaf"


def test_the_floor_is_inclusive() -> None:
    """A leaf with exactly ``floor`` rows is allowed; the smallest leaf + 1 is not."""
    data = _data()
    dm = xgb.DMatrix(data.X, label=data.y, feature_names=list(data.feature_names), nthread=1)
    booster = xgb.train(
        {"max_depth": 6, "min_child_weight": 0.0, "nthread": 1, "objective": "binary:logistic"},
        dm,
        num_boost_round=1,
    )
    leaves = booster.predict(dm, pred_leaf=True).reshape(data.rows, -1)
    smallest = int(np.unique(leaves[:, 0], return_counts=True)[1].min())
    site._check_leaf_rows(booster, dm, _empty(), smallest)
    with pytest.raises(InsufficientDataError):
        site._check_leaf_rows(booster, dm, _empty(), smallest + 1)
