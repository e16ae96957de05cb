"""Property tests: no mutation of a valid permit or request is ever allowed, and nothing raises."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from permits.guard import AccessRequest
from tests.permits.helpers import World, build_world

WORLD: World = build_world(cross_border=True)
ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.{}":,= '


def _mutate(token: str, pos: int, char: str) -> str:
    pos %= len(token)
    if token[pos] == char:
        char = "A" if char != "A" else "B"
    return token[:pos] + char + token[pos + 1 :]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(min_value=0, max_value=10_000), char=st.sampled_from(ALPHABET))
def test_any_single_character_change_of_the_permit_is_denied(pos: int, char: str) -> None:
    token = _mutate(WORLD.issued.token, pos, char)
    decision = WORLD.decide(WORLD.request(token=token))
    assert not decision.allowed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(min_value=0, max_value=10_000), char=st.sampled_from(ALPHABET))
def test_any_single_character_change_of_the_request_is_denied(pos: int, char: str) -> None:
    request = WORLD.request("evaluate")
    mutated = AccessRequest(
        request.permit, _mutate(request.proof, pos, char), request.operation, request.params
    )
    assert not WORLD.decide(mutated).allowed
