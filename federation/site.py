"""What a data holder computes in a round: pure functions over its own rows.

Inputs are the site's :class:`~federation.ports.SiteDataset`, the global tree
pack and the permit's :class:`~federation.ports.AccessTerms`; outputs are a
tree pack holding only the new trees (no per-node statistics) or a handful of
metrics. The Flower glue is in :mod:`federation.client_app`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from federation import trees, ubj
from federation.errors import AccessDeniedError, InsufficientDataError, JobConfigError
from federation.holdout import held_out
from federation.job import BoosterParams
from federation.ports import AccessTerms, SiteDataset

#: Metrics a site may report when the permit allows ``aggregate_metrics``.
METRIC_NAMES = ("auc", "logloss", "accuracy")


def effective_params(
    params: BoosterParams, terms: AccessTerms, base_score: np.ndarray
) -> dict[str, Any]:
    """XGBoost parameters with the permit's bounds applied (never loosened).

    ``min_child_weight >= min_rows_per_leaf``: each row's hessian is at most 1
    (0.25 for logistic, 0.5 for softmax), so every leaf then holds at least
    ``min_rows_per_leaf`` rows. :func:`train_round` re-checks it on the data.
    """
    if params.max_depth > terms.max_depth:
        raise AccessDeniedError("max_depth exceeds the permit", reason="max_depth_exceeded")
    out: dict[str, Any] = {
        "objective": params.objective,
        "eta": params.eta,
        "max_depth": params.max_depth,
        "min_child_weight": max(params.min_child_weight, float(terms.min_rows_per_leaf)),
        "lambda": params.reg_lambda,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "max_bin": params.max_bin,
        "tree_method": "hist",
        "nthread": 1,
        "seed": params.seed,
        "base_score": float(base_score[0]) if base_score.size == 1 else base_score.tolist(),
        "eval_metric": "logloss" if params.num_class == 0 else "mlogloss",
    }
    if params.num_class:
        out["num_class"] = params.num_class
    return out


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    evaluate: np.ndarray


def split_rows(data: SiteDataset, fraction: float, split_key: str) -> Split:
    """The site's rows on each side of the job's patient-level split (:mod:`federation.holdout`).

    Rows without patient keys (a source that offers none) count as one patient each.
    """
    keys = data.patient_keys or tuple(f"row-{i}" for i in range(data.rows))
    if len(keys) != data.rows:
        raise JobConfigError("the site's patient keys do not match its rows")
    mask = held_out(keys, split_key, fraction)
    return Split(train=np.flatnonzero(~mask), evaluate=np.flatnonzero(mask))


def check_site_rows(data: SiteDataset, terms: AccessTerms) -> None:
    if data.rows < terms.min_rows_per_site:
        raise InsufficientDataError(
            f"site has fewer rows than the permit's minimum ({terms.min_rows_per_site})",
            reason="min_rows_per_site",
        )


def booster_from_pack(pack: Mapping[str, Any]) -> xgb.Booster | None:
    if not pack["trees"]:
        return None
    booster = xgb.Booster(params={"nthread": 1})
    booster.load_model(bytearray(trees.model_ubj(pack)))
    return booster


def train_round(
    data: SiteDataset,
    rows: np.ndarray,
    global_pack: Mapping[str, Any],
    params: BoosterParams,
    terms: AccessTerms,
) -> trees.Pack:
    """Boost ``params.local_rounds`` rounds on top of the global model; return new trees only."""
    if len(rows) < terms.min_rows_per_site:
        raise InsufficientDataError(
            "too few training rows at this site", reason="min_rows_per_site"
        )
    names = _feature_names(data, global_pack)
    base = np.asarray(global_pack["base_score"], dtype=np.float32)
    dtrain = xgb.DMatrix(data.X[rows], label=data.y[rows], feature_names=names, nthread=1)
    start = booster_from_pack(global_pack)
    booster = xgb.train(
        effective_params(params, terms, base),
        dtrain,
        num_boost_round=params.local_rounds,
        xgb_model=start,
    )
    n_old = len(global_pack["trees"])
    document = ubj.loads(bytes(booster.save_raw("ubj")))
    if not isinstance(document, dict):
        raise JobConfigError("XGBoost produced an unexpected model document")
    pack = trees.pack_from_model(document, first_tree=n_old)
    pack["feature_names"] = list(global_pack["feature_names"])
    pack["base_score"] = base
    _check_leaf_rows(booster, dtrain, global_pack, terms.min_rows_per_leaf)
    return trees.validate_pack(pack, expect_header=trees.header(global_pack))


def _feature_names(data: SiteDataset, pack: Mapping[str, Any]) -> list[str] | None:
    """The site's columns must be the global model's features, in order."""
    names = list(pack["feature_names"])
    if data.X.ndim != 2 or data.X.shape[1] != int(pack["num_feature"]):
        raise JobConfigError("feature count differs from the global model")
    if names and list(data.feature_names) != names:
        raise JobConfigError("site features differ from the global model's")
    return names or None


def _check_leaf_rows(
    booster: xgb.Booster, dtrain: xgb.DMatrix, global_pack: Mapping[str, Any], floor: int
) -> None:
    """Every leaf of the new trees must cover at least ``floor`` training rows."""
    leaves = booster.predict(dtrain, pred_leaf=True)
    leaves = leaves.reshape(leaves.shape[0], -1)
    for column in leaves[:, len(global_pack["trees"]) :].T:
        counts = np.unique(column, return_counts=True)[1]
        if counts.min() < floor:
            raise InsufficientDataError(
                "a leaf covers fewer rows than the permit's floor", reason="min_rows_per_leaf"
            )


def evaluate_pack(
    data: SiteDataset, rows: np.ndarray, pack: Mapping[str, Any], terms: AccessTerms
) -> dict[str, float]:
    """Permitted metrics of the global model on this site's evaluation rows.

    Nothing is reported unless the permit allows aggregate metrics and the
    evaluation set is at or above the disclosure floor; AUC additionally needs
    every class at or above it (a tiny class would make AUC a near-count).
    """
    floor = terms.min_rows_per_leaf
    if "aggregate_metrics" not in terms.outputs or len(rows) < floor:
        return {}
    y = data.y[rows]
    booster = booster_from_pack(pack)
    dm = xgb.DMatrix(data.X[rows], feature_names=_feature_names(data, pack), nthread=1)
    groups = trees.n_groups(pack)
    if booster is None:
        base = np.asarray(pack["base_score"], dtype=np.float64)
        proba = np.tile(base / base.sum() if groups > 1 else base, (len(rows), 1))
    else:
        proba = booster.predict(dm).reshape(len(rows), -1)
    metrics: dict[str, float] = {"num-examples": float(len(rows))}
    labels = np.arange(max(2, groups))
    if groups == 1:
        p1 = np.clip(proba[:, 0], 1e-7, 1 - 1e-7)
        full = np.column_stack([1 - p1, p1])
    else:
        full = np.clip(proba, 1e-7, 1.0)
        full = full / full.sum(axis=1, keepdims=True)
    metrics["logloss"] = float(log_loss(y, full, labels=labels))
    metrics["accuracy"] = float(accuracy_score(y, full.argmax(axis=1)))
    counts = np.bincount(y.astype(np.int64), minlength=len(labels))
    if counts.min() >= floor:
        if groups == 1:
            metrics["auc"] = float(roc_auc_score(y, full[:, 1]))
        else:
            metrics["auc"] = float(roc_auc_score(y, full, multi_class="ovr", labels=labels))
    return metrics
