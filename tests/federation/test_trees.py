"""Tree packs: exact round trips, no node statistics, every multiclass tree kept."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import xgboost as xgb
from flwr.serverapp.strategy.strategy_utils import aggregate_bagging

from federation import trees, ubj
from federation.errors import ModelFormatError


def _booster(
    objective: str, rounds: int = 2, seed: int = 0, **extra: object
) -> tuple[xgb.Booster, xgb.DMatrix]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    if objective == "multi:softprob":
        y = rng.integers(0, 3, 400)
        params = {"objective": objective, "num_class": 3, "max_depth": 3, "base_score": 0.5}
    else:
        y = (X[:, 0] + rng.normal(size=400) > 0).astype(int)
        params = {"objective": objective, "max_depth": 3, "base_score": 0.5}
    params.update(extra)
    dm = xgb.DMatrix(X, label=y)
    return xgb.train(params, dm, rounds), dm


def _pack(booster: xgb.Booster, first_tree: int = 0) -> trees.Pack:
    return trees.pack_from_model(ubj.loads(bytes(booster.save_raw("ubj"))), first_tree=first_tree)


def _load(pack: trees.Pack) -> xgb.Booster:
    b = xgb.Booster()
    b.load_model(bytearray(trees.model_ubj(pack)))
    return b


@pytest.mark.parametrize("objective", ["binary:logistic", "multi:softprob"])
def test_pack_round_trip_predicts_identically(objective: str) -> None:
    booster, dm = _booster(objective)
    pack = trees.decode_pack(trees.encode_pack(_pack(booster)))
    assert np.array_equal(_load(pack).predict(dm), booster.predict(dm))


def test_pack_carries_no_node_statistics() -> None:
    booster, _ = _booster("binary:logistic")
    full = bytes(booster.save_raw("ubj"))
    assert b"sum_hessian" in full  # XGBoost's own model has them...
    encoded = trees.encode_pack(_pack(booster))
    for name in trees.NODE_STATISTICS | {"parents"}:
        assert name.encode() not in encoded  # ...a pack never does
    for tree in trees.decode_pack(encoded)["trees"]:
        assert set(tree) == set(trees.TREE_FIELDS)


def test_released_model_has_zero_statistics() -> None:
    booster, _ = _booster("binary:logistic")
    doc = orjson.loads(_load(_pack(booster)).save_raw("json"))
    for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
        for name in trees.NODE_STATISTICS:
            assert not any(tree[name])


@pytest.mark.parametrize("leak", sorted(trees.NODE_STATISTICS))
def test_validate_refuses_smuggled_statistics(leak: str) -> None:
    booster, _ = _booster("binary:logistic")
    pack = _pack(booster)
    pack["trees"][0][leak] = np.ones(pack["trees"][0]["left_children"].size, dtype=np.float32)
    with pytest.raises(ModelFormatError, match="per-node statistics"):
        trees.decode_pack(ubj.dumps(pack))


def test_validate_refuses_cycles_and_bad_indices() -> None:
    booster, _ = _booster("binary:logistic")
    pack = _pack(booster)
    tree = pack["trees"][0]
    tree["left_children"][0] = 0  # self loop
    with pytest.raises(ModelFormatError):
        trees.validate_pack(pack)
    pack = _pack(booster)
    pack["trees"][0]["split_indices"][0] = 99
    with pytest.raises(ModelFormatError, match="feature index"):
        trees.validate_pack(pack)
    pack = _pack(booster)
    pack["extra"] = 1
    with pytest.raises(ModelFormatError, match="unexpected"):
        trees.validate_pack(pack)


def test_ubj_decoder_is_bounded() -> None:
    booster, _ = _booster("binary:logistic")
    data = trees.encode_pack(_pack(booster))
    for cut in (1, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(ModelFormatError):
            trees.decode_pack(data[:cut])
    with pytest.raises(ModelFormatError):
        ubj.loads(b"[$d#L\x7f\xff\xff\xff\xff\xff\xff\xff")  # claims 2^63 floats
    with pytest.raises(ModelFormatError):
        ubj.loads(b"[" * 100 + b"]" * 100)


def test_ubj_is_smaller_than_json_and_than_xgboost_formats() -> None:
    booster, _ = _booster("multi:softprob", rounds=5)
    pack = _pack(booster)
    encoded = trees.encode_pack(pack)
    as_json = orjson.dumps(pack, option=orjson.OPT_SERIALIZE_NUMPY)
    assert encoded == ubj.dumps(pack)  # UBJ chosen
    assert len(encoded) < len(as_json)
    assert len(encoded) < len(booster.save_raw("ubj")) < len(booster.save_raw("json"))
    empty = trees.empty_pack(
        objective="binary:logistic", num_feature=2, num_class=0, base_score=[0.5]
    )
    assert len(trees.encode_pack(empty)) <= len(ubj.dumps(empty))


def test_multiclass_bagging_keeps_every_tree() -> None:
    """Flower's aggregate_bagging keeps num_parallel_tree (=1) tree per round; we keep all K."""
    global_booster, dm = _booster("multi:softprob", rounds=1, seed=1)
    site_a, _ = _booster("multi:softprob", rounds=1, seed=2)
    site_b, _ = _booster("multi:softprob", rounds=1, seed=3)

    stock = aggregate_bagging(
        bytes(global_booster.save_raw("json")), bytes(site_a.save_raw("json"))
    )
    stock_trees = orjson.loads(stock)["learner"]["gradient_booster"]["model"]["trees"]
    assert len(stock_trees) == 3 + 1  # the bug: two of the three new class trees are lost

    merged = trees.append_trees(_pack(global_booster), [(_pack(site_a), 0.5), (_pack(site_b), 0.5)])
    assert len(merged["trees"]) == 3 + 3 + 3
    assert merged["tree_info"].tolist() == [0, 1, 2] * 3
    trees.validate_pack(merged)
    # prediction = global + weighted mean of the site updates, class by class
    margin = lambda b: b.predict(dm, output_margin=True)  # noqa: E731
    expected = margin(global_booster) + 0.5 * (margin(site_a) - 0.5) + 0.5 * (margin(site_b) - 0.5)
    assert np.allclose(margin(_load(merged)), expected, atol=1e-5)


def test_merge_refuses_a_different_intercept() -> None:
    a, _ = _booster("binary:logistic", seed=1)
    b, _ = _booster("binary:logistic", seed=2, base_score=0.3)
    with pytest.raises(ModelFormatError, match="does not match"):
        trees.append_trees(_pack(a), [(_pack(b), 1.0)])


def test_merge_is_independent_of_reply_order() -> None:
    g, _ = _booster("binary:logistic", seed=1)
    parts = [(_pack(_booster("binary:logistic", seed=s)[0]), w) for s, w in ((2, 0.3), (3, 0.7))]
    one = trees.append_trees(_pack(g), sorted(parts, key=lambda p: p[1]))
    two = trees.append_trees(_pack(g), sorted(parts, key=lambda p: -p[1]))
    dm = xgb.DMatrix(np.random.default_rng(0).normal(size=(50, 5)).astype(np.float32))
    assert np.allclose(_load(one).predict(dm), _load(two).predict(dm), atol=1e-6)
