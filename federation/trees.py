"""Tree packs: the only form in which a model crosses a site boundary.

A *tree pack* is a plain mapping holding just what prediction needs, per tree:
``left_children``, ``right_children``, ``split_indices``, ``split_conditions``
(leaf values at leaves), ``default_left``, ``split_type`` and the categorical
split arrays. XGBoost's own model additionally stores per-node training
statistics - ``sum_hessian`` (the row weight behind every node), ``loss_changes``
and ``base_weights`` - that model-inversion attacks such as TimberStrike read
back into the training rows. They are never copied into a pack, and
:func:`validate_pack` refuses any pack that has them, so the rule holds on both
sides of the wire. A pack is rebuilt into a Booster with those statistics set
to zero, which does not change a single prediction.

Everything here is pure: dicts and numpy arrays in, dicts and arrays out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import orjson

from federation import ubj
from federation.errors import ModelFormatError

PACK_FORMAT: Final = "ehds-trees/1"
SUPPORTED_OBJECTIVES: Final = frozenset({"binary:logistic", "multi:softprob"})

#: Per-tree arrays a pack may carry, with their dtype on the wire.
TREE_FIELDS: Final[dict[str, str]] = {
    "left_children": "int32",
    "right_children": "int32",
    "split_indices": "int32",
    "split_conditions": "float32",
    "default_left": "uint8",
    "split_type": "uint8",
    "categories": "int32",
    "categories_nodes": "int32",
    "categories_segments": "int64",
    "categories_sizes": "int64",
}
#: Per-node statistics of XGBoost models that must never leave a site.
NODE_STATISTICS: Final = frozenset({"sum_hessian", "loss_changes", "base_weights"})
PACK_KEYS: Final = frozenset(
    {
        "format",
        "objective",
        "num_feature",
        "num_class",
        "base_score",
        "feature_names",
        "tree_info",
        "iteration_indptr",
        "trees",
    }
)
MAX_TREES: Final = 20_000
MAX_NODES_PER_TREE: Final = 2**16
MAX_FEATURES: Final = 10_000

Pack = dict[str, Any]


def _model_root(model: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    try:
        learner = model["learner"]
        gbm = learner["gradient_booster"]
        if gbm.get("name") != "gbtree":
            raise ModelFormatError("only gbtree boosters are supported")
        return learner, gbm["model"]
    except (KeyError, TypeError) as exc:
        raise ModelFormatError("not an XGBoost model document") from exc


def _parse_base_score(text: object) -> np.ndarray:
    """XGBoost writes ``base_score`` as ``"[5E-1,5E-1]"`` (vector) or ``"5E-1"``."""
    if not isinstance(text, str):
        raise ModelFormatError("base_score must be a string in the XGBoost model")
    body = text.strip().strip("[]")
    try:
        return np.array([float(v) for v in body.split(",") if v.strip()], dtype=np.float32)
    except ValueError as exc:
        raise ModelFormatError("unparseable base_score") from exc


def pack_from_model(model: Mapping[str, Any], *, first_tree: int = 0) -> Pack:
    """The trees ``first_tree..`` of a decoded XGBoost model, statistics dropped.

    ``model`` is the document from ``Booster.save_raw("ubj")`` decoded with
    :func:`federation.ubj.loads` (or the JSON form). Only the new trees of a
    round go up, so a site passes the number of trees it received.
    """
    learner, booster = _model_root(model)
    trees_in = booster["trees"]
    indptr = [int(v) for v in booster["iteration_indptr"]]
    if not 0 <= first_tree <= len(trees_in) or first_tree not in indptr:
        raise ModelFormatError("first_tree must fall on an iteration boundary")
    trees: list[dict[str, np.ndarray]] = []
    for tree in trees_in[first_tree:]:
        trees.append(
            {
                name: np.asarray(tree[name], dtype=dtype).reshape(-1)
                for name, dtype in TREE_FIELDS.items()
            }
        )
    lmp = learner["learner_model_param"]
    start = indptr.index(first_tree)
    return {
        "format": PACK_FORMAT,
        "objective": str(learner["objective"]["name"]),
        "num_feature": int(lmp["num_feature"]),
        "num_class": int(lmp["num_class"]),
        "base_score": _parse_base_score(lmp["base_score"]),
        "feature_names": [str(n) for n in learner.get("feature_names", [])],
        "tree_info": np.asarray(booster["tree_info"], dtype=np.int32)[first_tree:],
        "iteration_indptr": np.asarray(indptr[start:], dtype=np.int64) - first_tree,
        "trees": trees,
    }


def empty_pack(
    *,
    objective: str,
    num_feature: int,
    num_class: int,
    base_score: Sequence[float],
    feature_names: Sequence[str] = (),
) -> Pack:
    """A model with no trees yet: what the coordinator broadcasts in round 1."""
    return {
        "format": PACK_FORMAT,
        "objective": objective,
        "num_feature": int(num_feature),
        "num_class": int(num_class),
        "base_score": np.asarray(base_score, dtype=np.float32),
        "feature_names": list(feature_names),
        "tree_info": np.zeros(0, dtype=np.int32),
        "iteration_indptr": np.zeros(1, dtype=np.int64),
        "trees": [],
    }


def header(pack: Mapping[str, Any]) -> tuple[object, ...]:
    """What two packs must share to be merged (same task, same intercept)."""
    return (
        pack["objective"],
        int(pack["num_feature"]),
        int(pack["num_class"]),
        tuple(float(v) for v in np.asarray(pack["base_score"]).tolist()),
        tuple(pack["feature_names"]),
    )


def n_groups(pack: Mapping[str, Any]) -> int:
    """Output groups: one per class for softprob, one for binary."""
    return max(1, int(pack["num_class"]))


def _check_array(tree: Mapping[str, Any], name: str, dtype: str) -> np.ndarray:
    value = tree.get(name)
    if not isinstance(value, np.ndarray) or value.ndim != 1:
        raise ModelFormatError(f"tree field {name} must be a 1-d typed array")
    if value.dtype.name != dtype:
        raise ModelFormatError(f"tree field {name} must be {dtype}")
    return value


def _validate_tree(tree: object, num_feature: int) -> None:
    if not isinstance(tree, Mapping):
        raise ModelFormatError("a tree must be an object")
    keys = set(tree)
    leaked = keys & NODE_STATISTICS
    if leaked:
        raise ModelFormatError("tree carries per-node statistics: " + ",".join(sorted(leaked)))
    if keys != set(TREE_FIELDS):
        raise ModelFormatError("tree has unexpected or missing fields")
    arrays = {name: _check_array(tree, name, dtype) for name, dtype in TREE_FIELDS.items()}
    n = arrays["left_children"].size
    if not 1 <= n <= MAX_NODES_PER_TREE:
        raise ModelFormatError("tree node count out of bounds")
    for name in ("right_children", "split_indices", "split_conditions", "default_left"):
        if arrays[name].size != n:
            raise ModelFormatError(f"tree field {name} has the wrong length")
    if arrays["split_type"].size not in (0, n):
        raise ModelFormatError("tree field split_type has the wrong length")
    left, right = arrays["left_children"], arrays["right_children"]
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        raise ModelFormatError("a node has exactly one child")
    children = np.concatenate([left[~leaf], right[~leaf]])
    # Every non-root node has exactly one parent and children point forward:
    # rules out cycles and shared subtrees without walking the tree.
    if children.size != n - 1 or np.unique(children).size != n - 1:
        raise ModelFormatError("tree is not a tree")
    if children.size and (children.min() < 1 or children.max() >= n):
        raise ModelFormatError("child index out of bounds")
    parents_idx = np.concatenate([np.flatnonzero(~leaf), np.flatnonzero(~leaf)])
    if np.any(children <= parents_idx):
        raise ModelFormatError("child index must follow its parent")
    split = arrays["split_indices"][~leaf]
    if split.size and (split.min() < 0 or split.max() >= num_feature):
        raise ModelFormatError("split feature index out of bounds")
    if not np.all(np.isfinite(arrays["split_conditions"])):
        raise ModelFormatError("non-finite split condition or leaf value")
    if arrays["categories"].size or arrays["categories_nodes"].size:
        raise ModelFormatError("categorical splits are not supported")


def validate_pack(pack: object, *, expect_header: tuple[object, ...] | None = None) -> Pack:
    """Check a pack from an untrusted peer; return it typed, or raise.

    Refuses unknown keys and every per-node statistic, so a site that forgot to
    strip (or a coordinator that tried to smuggle data back) is caught here too.
    """
    if not isinstance(pack, dict):
        raise ModelFormatError("tree pack must be an object")
    if set(pack) != PACK_KEYS or pack.get("format") != PACK_FORMAT:
        raise ModelFormatError("tree pack has unexpected or missing fields")
    if pack["objective"] not in SUPPORTED_OBJECTIVES:
        raise ModelFormatError("unsupported objective")
    num_feature, num_class = pack["num_feature"], pack["num_class"]
    if not isinstance(num_feature, int) or not 1 <= num_feature <= MAX_FEATURES:
        raise ModelFormatError("num_feature out of bounds")
    if not isinstance(num_class, int) or not (num_class == 0 or 3 <= num_class <= 1000):
        raise ModelFormatError("num_class out of bounds")
    if (pack["objective"] == "binary:logistic") != (num_class == 0):
        raise ModelFormatError("objective and num_class disagree")
    base = pack["base_score"]
    if not isinstance(base, np.ndarray) or base.dtype.name != "float32":
        raise ModelFormatError("base_score must be a float32 array")
    if base.size != n_groups(pack) or not np.all(np.isfinite(base)):
        raise ModelFormatError("base_score has the wrong shape")
    names = pack["feature_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFormatError("feature_names must be a list of strings")
    if names and len(names) != num_feature:
        raise ModelFormatError("feature_names length differs from num_feature")
    trees = pack["trees"]
    if not isinstance(trees, list) or len(trees) > MAX_TREES:
        raise ModelFormatError("trees must be a list within bounds")
    for tree in trees:
        _validate_tree(tree, num_feature)
    info = pack["tree_info"]
    if not isinstance(info, np.ndarray) or info.dtype.name != "int32" or info.size != len(trees):
        raise ModelFormatError("tree_info must give one group per tree")
    if info.size and (info.min() < 0 or info.max() >= n_groups(pack)):
        raise ModelFormatError("tree_info group out of bounds")
    indptr = pack["iteration_indptr"]
    if not isinstance(indptr, np.ndarray) or indptr.dtype.name != "int64" or indptr.size < 1:
        raise ModelFormatError("iteration_indptr must be an int64 array")
    if indptr[0] != 0 or indptr[-1] != len(trees) or np.any(np.diff(indptr) <= 0):
        raise ModelFormatError("iteration_indptr is inconsistent with the trees")
    if expect_header is not None and header(pack) != expect_header:
        raise ModelFormatError("tree pack does not match the global model")
    return pack


def encode_pack(pack: Mapping[str, Any]) -> bytes:
    """UBJ, or JSON when that happens to be smaller (only for near-empty packs)."""
    binary = ubj.dumps(pack)
    text = orjson.dumps(pack, option=orjson.OPT_SERIALIZE_NUMPY)
    return text if len(text) < len(binary) else binary


def decode_pack(data: bytes, *, expect_header: tuple[object, ...] | None = None) -> Pack:
    """Inverse of :func:`encode_pack`, validated; raises ModelFormatError."""
    if data[:2] == b'{"':
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ModelFormatError("tree pack is not valid JSON") from exc
        raw = _arrays_from_json(raw)
    else:
        raw = ubj.loads(data)
    return validate_pack(raw, expect_header=expect_header)


def _arrays_from_json(raw: object) -> object:
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    if isinstance(out.get("base_score"), list):
        out["base_score"] = np.asarray(out["base_score"], dtype=np.float32)
    if isinstance(out.get("tree_info"), list):
        out["tree_info"] = np.asarray(out["tree_info"], dtype=np.int32)
    if isinstance(out.get("iteration_indptr"), list):
        out["iteration_indptr"] = np.asarray(out["iteration_indptr"], dtype=np.int64)
    if isinstance(out.get("trees"), list):
        out["trees"] = [
            {
                k: np.asarray(v, dtype=TREE_FIELDS[k])
                if k in TREE_FIELDS and isinstance(v, list)
                else v
                for k, v in t.items()
            }
            if isinstance(t, dict)
            else t
            for t in out["trees"]
        ]
    return out


def pack_hash(pack: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical UBJ encoding: what audit entries carry."""
    return "sha256:" + hashlib.sha256(ubj.dumps(pack)).hexdigest()


def _scaled(tree: Mapping[str, np.ndarray], weight: float) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in tree.items()}
    if weight != 1.0:
        leaf = out["left_children"] == -1
        out["split_conditions"][leaf] = (out["split_conditions"][leaf] * weight).astype(np.float32)
    return out


def append_trees(
    global_pack: Mapping[str, Any], parts: Sequence[tuple[Mapping[str, Any], float]]
) -> Pack:
    """Append every tree of every part to the global model, leaves scaled by weight.

    Bagging passes weights ``n_i / sum(n)``: each site fitted the same global
    gradient on its own rows, so the weighted mean of their updates is the
    federated estimate of one boosting step (summing them, as Flower does,
    overshoots by the number of sites). Cyclic passes weight 1. All trees of a
    part are kept - including the ``num_class`` trees per round of a
    multiclass model - and each part becomes its own boosting iterations.
    """
    expected = header(global_pack)
    trees = list(global_pack["trees"])
    info = [np.asarray(global_pack["tree_info"], dtype=np.int32)]
    indptr = [int(v) for v in np.asarray(global_pack["iteration_indptr"]).tolist()]
    for part, weight in parts:
        if header(part) != expected:
            raise ModelFormatError("tree pack does not match the global model")
        if not (np.isfinite(weight) and weight > 0):
            raise ModelFormatError("aggregation weight must be positive")
        offset = len(trees)
        trees.extend(_scaled(t, float(weight)) for t in part["trees"])
        info.append(np.asarray(part["tree_info"], dtype=np.int32))
        indptr.extend(offset + int(v) for v in np.asarray(part["iteration_indptr"])[1:])
    out = dict(global_pack)
    out["trees"] = trees
    out["tree_info"] = np.concatenate(info).astype(np.int32)
    out["iteration_indptr"] = np.asarray(indptr, dtype=np.int64)
    return out


def _objective_doc(pack: Mapping[str, Any]) -> dict[str, Any]:
    if pack["objective"] == "multi:softprob":
        return {
            "name": "multi:softprob",
            "softmax_multiclass_param": {"num_class": str(pack["num_class"])},
        }
    return {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "1"}}


def model_document(pack: Mapping[str, Any]) -> dict[str, Any]:
    """The full XGBoost model document for a pack (statistics zero-filled)."""
    trees_doc: list[dict[str, Any]] = []
    for i, tree in enumerate(pack["trees"]):
        n = int(tree["left_children"].size)
        zeros = np.zeros(n, dtype=np.float32)
        parents = np.full(n, 2147483647, dtype=np.int32)
        inner = np.flatnonzero(tree["left_children"] != -1)
        parents[tree["left_children"][inner]] = inner
        parents[tree["right_children"][inner]] = inner
        split_type = tree["split_type"]
        doc: dict[str, Any] = {name: tree[name] for name in TREE_FIELDS}
        doc.update(
            {
                "split_type": split_type if split_type.size else np.zeros(n, dtype=np.uint8),
                "base_weights": zeros,
                "loss_changes": zeros,
                "sum_hessian": zeros,
                "parents": parents,
                "id": i,
                "tree_param": {
                    "num_deleted": "0",
                    "num_feature": str(pack["num_feature"]),
                    "num_nodes": str(n),
                    "size_leaf_vector": "1",
                },
            }
        )
        trees_doc.append(doc)
    base = ",".join(repr(float(v)) for v in np.asarray(pack["base_score"]).tolist())
    names = list(pack["feature_names"])
    return {
        "version": [3, 2, 0],
        "learner": {
            "attributes": {},
            "feature_names": names,
            "feature_types": ["float"] * len(names),
            "gradient_booster": {
                "name": "gbtree",
                "model": {
                    "cats": {
                        "enc": [],
                        "feature_segments": np.zeros(0, dtype=np.int32),
                        "sorted_idx": np.zeros(0, dtype=np.int32),
                    },
                    "gbtree_model_param": {
                        "num_parallel_tree": "1",
                        "num_trees": str(len(trees_doc)),
                    },
                    "iteration_indptr": [int(v) for v in pack["iteration_indptr"]],
                    "tree_info": [int(v) for v in pack["tree_info"]],
                    "trees": trees_doc,
                },
            },
            "learner_model_param": {
                "base_score": f"[{base}]",
                "boost_from_average": "0",
                "num_class": str(pack["num_class"]),
                "num_feature": str(pack["num_feature"]),
                "num_target": "1",
            },
            "objective": _objective_doc(pack),
        },
    }


def model_ubj(pack: Mapping[str, Any]) -> bytes:
    """XGBoost-loadable UBJ bytes of a pack (what the released ``model.ubj`` holds)."""
    return ubj.dumps(model_document(pack), xgboost_compatible=True)
