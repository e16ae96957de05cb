"""Property test: the JWS parser refuses garbage with a TrustError, never anything else."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from trust import TrustError, parse_jws


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_parser_only_raises_trust_errors(data: str | bytes) -> None:
    with contextlib.suppress(TrustError):
        parse_jws(data)


@settings(max_examples=100, deadline=None)
@given(
    st.text(
        alphabet='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.{}":,= ',
        max_size=200,
    )
)
def test_parser_on_token_like_text(data: str) -> None:
    with contextlib.suppress(TrustError):
        parse_jws(data)
