"""A run that produced nothing usable is failed, not released, and its card says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from federation import trees
from federation.client_app import SimulationSites, make_client_app
from federation.errors import DegenerateModelError, NoEvaluationError
from federation.outcome import check_releasable, is_constant
from federation.server_app import run_coordinator
from federation.testing.inprocess import InProcessGrid
from tests.federation.conftest import SITES, WorldFactory


def tree(left: list[int], right: list[int], values: list[float]) -> dict[str, np.ndarray]:
    n = len(left)
    return {
        "left_children": np.asarray(left, dtype=np.int32),
        "right_children": np.asarray(right, dtype=np.int32),
        "split_indices": np.zeros(n, dtype=np.int32),
        "split_conditions": np.asarray(values, dtype=np.float32),
        "default_left": np.zeros(n, dtype=np.uint8),
        "split_type": np.zeros(n, dtype=np.uint8),
    }


def pack(*ts: dict[str, np.ndarray]) -> dict[str, object]:
    out = trees.empty_pack(
        objective="binary:logistic", num_feature=2, num_class=0, base_score=[0.5]
    )
    out["trees"] = list(ts)
    return out


STUMP = tree([-1], [-1], [0.0])
SPLIT = tree([1, -1, -1], [2, -1, -1], [0.5, -0.2, 0.3])
EQUAL_LEAVES = tree([1, -1, -1], [2, -1, -1], [0.5, 0.1, 0.1])


def test_constant_models_are_recognised() -> None:
    assert is_constant(pack())
    assert is_constant(pack(STUMP, STUMP))
    assert is_constant(pack(EQUAL_LEAVES, STUMP))  # a split whose leaves agree changes nothing
    assert not is_constant(pack(STUMP, SPLIT))


def test_check_releasable() -> None:
    metrics = {"auc": 0.7}
    check_releasable(pack(SPLIT), metrics, evaluation_permitted=True)
    check_releasable(pack(SPLIT), {}, evaluation_permitted=False)
    with pytest.raises(DegenerateModelError):
        check_releasable(pack(STUMP), metrics, evaluation_permitted=True)
    with pytest.raises(NoEvaluationError):
        check_releasable(pack(SPLIT), {}, evaluation_permitted=True)


def test_a_run_of_single_leaf_trees_fails_with_a_card_that_says_why(
    make_world: WorldFactory,
) -> None:
    """The leaf floor is above what any site's rows can split: every tree is one leaf."""
    world = make_world(min_rows_per_leaf=200, min_rows_per_site=10)
    job = world.job(rounds=1)
    stale = Path(job.output_dir) / "model.ubj"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"an earlier run's model")
    grid = InProcessGrid(make_client_app(SimulationSites(job.sites)), len(job.sites))
    result = run_coordinator(grid, job, engine="inprocess")
    assert result.status == "failed"
    assert result.error_code == "FED_DEGENERATE_MODEL"
    assert result.model_hash is None and result.model_ubj is None
    assert not stale.exists()
    assert result.model_card is not None
    card = orjson.loads(Path(result.model_card).read_bytes())
    assert card["status"] == "failed" and card["model"] is None
    assert card["error_code"] == "FED_DEGENERATE_MODEL"
    assert "constant" in card["reason"]
    assert card["sites_contributed"] == result.contributing_sites != []
    assert "model.released" not in {e["type"] for e in world.events("coordinator")}


def test_a_run_refused_everywhere_fails_with_a_card(make_world: WorldFactory) -> None:
    world = make_world(min_rows_per_site=100_000)
    job = world.job(rounds=1)
    grid = InProcessGrid(make_client_app(SimulationSites(job.sites)), len(job.sites))
    result = run_coordinator(grid, job, engine="inprocess")
    assert result.status == "failed"
    card = orjson.loads(Path(str(result.model_card)).read_bytes())
    assert card["status"] == "failed" and card["error_code"] == result.error_code
    assert set(card["sites_failed"]) == set(SITES)
