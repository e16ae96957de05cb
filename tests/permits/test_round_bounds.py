"""Round budgets at their edges: exactly ``max_rounds`` is allowed, one more is not.

Written so the off-by-one mutants a review injected (``max_rounds + 1`` in
``check_bounds``, ``limit + 1`` in the SQLite ledger) turn these tests red.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.state import SqliteGuardState
from permits.errors import VerificationError
from permits.guard import MemoryRoundLedger, check_bounds
from permits.model import Permit
from permits.reasons import ReasonCode
from tests.permits.helpers import World, build_world, train_params
from trust import parse_jws


def _permit(world: World) -> Permit:
    return Permit.model_validate_json(parse_jws(world.issued.token).payload)


def test_check_bounds_allows_max_rounds_and_refuses_one_more(world: World) -> None:
    permit = _permit(world)
    grant = permit.grant_for("site-a")
    assert grant is not None
    limit = permit.processing.federated_xgboost.max_rounds
    check_bounds(permit, grant, "train", train_params(rounds=limit))  # at the limit: fine
    with pytest.raises(VerificationError) as err:
        check_bounds(permit, grant, "train", train_params(rounds=limit + 1))
    assert err.value.reason is ReasonCode.ROUNDS_EXCEEDED


def test_guard_spends_the_whole_budget_then_refuses() -> None:
    world = build_world()
    limit = _permit(world).processing.federated_xgboost.max_rounds
    decision = world.decide(world.request(params=train_params(rounds=limit)))
    assert decision.allowed and decision.rounds_used == limit
    world.assert_denied(world.request(params=train_params(rounds=1)), ReasonCode.ROUNDS_EXCEEDED)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_ledgers_count_to_the_limit_and_not_beyond(kind: str, tmp_path: Path) -> None:
    ledger = MemoryRoundLedger() if kind == "memory" else SqliteGuardState(tmp_path / "g.db")
    assert [ledger.reserve("p", 1, 3) for _ in range(3)] == [1, 2, 3]
    assert ledger.reserve("p", 1, 3) is None  # max + 1
    assert ledger.used("p") == 3
    assert ledger.reserve("q", 4, 3) is None  # one request over the limit on its own
    assert ledger.used("q") == 0
    assert ledger.reserve("q", 3, 3) == 3
