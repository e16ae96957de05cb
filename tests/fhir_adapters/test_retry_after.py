"""Property test of the ``Retry-After`` parser over every form a server sends."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_adapters.sources.http import RetryPolicy
from fhir_adapters.sources.retry_after import classify_number, parse_retry_after

# Any "now" from 2001 to 2100, and waits from nothing to a week.
NOW = st.floats(min_value=1.0e9, max_value=4.1e9, allow_nan=False)
WAIT = st.integers(min_value=0, max_value=7 * 24 * 3600)


@settings(max_examples=300, deadline=None)
@given(now=NOW, wait=WAIT)
def test_delay_seconds(now: float, wait: int) -> None:
    assert parse_retry_after(str(wait), now=now) == float(wait)
    assert classify_number(float(wait), now) == "delay"


@settings(max_examples=300, deadline=None)
@given(now=NOW, wait=WAIT)
def test_absolute_epoch_seconds(now: float, wait: int) -> None:
    value = int(now) + wait
    got = parse_retry_after(str(value), now=now)
    assert got is not None and abs(got - max(0.0, value - now)) < 1e-6
    assert got <= wait + 1e-6


@settings(max_examples=300, deadline=None)
@given(now=NOW, wait=WAIT)
def test_absolute_epoch_milliseconds(now: float, wait: int) -> None:
    value = int(now * 1000) + wait * 1000
    got = parse_retry_after(str(value), now=now)
    assert got is not None and abs(got - wait) < 0.002


@settings(max_examples=300, deadline=None)
@given(now=NOW, ago=st.integers(min_value=1, max_value=365 * 24 * 3600), ms=st.booleans())
def test_epoch_in_the_past_means_now(now: float, ago: int, ms: bool) -> None:
    value = int(now) - ago
    text = str(value * 1000) if ms else str(value)
    assert parse_retry_after(text, now=now) == 0.0


@settings(max_examples=200, deadline=None)
@given(now=NOW, wait=WAIT)
def test_http_date(now: float, wait: int) -> None:
    when = datetime.fromtimestamp(int(now) + wait, tz=UTC)
    got = parse_retry_after(email.utils.format_datetime(when, usegmt=True), now=now)
    assert got is not None and abs(got - max(0.0, int(now) + wait - now)) < 1e-6


@settings(max_examples=300, deadline=None)
@given(now=NOW, text=st.text(max_size=40))
def test_anything_else_is_none_or_a_non_negative_wait(now: float, text: str) -> None:
    got = parse_retry_after(text, now=now)
    assert got is None or got >= 0.0


@settings(max_examples=100, deadline=None)
@given(now=NOW, value=st.floats(max_value=-1e-9) | st.just(float("nan")) | st.just(float("inf")))
def test_negative_and_non_finite_are_refused(now: float, value: float) -> None:
    assert parse_retry_after(repr(value), now=now) is None


@settings(max_examples=200, deadline=None)
@given(now=NOW, wait=WAIT, cap=st.floats(min_value=1.0, max_value=3600.0))
def test_waits_are_capped(now: float, wait: int, cap: float) -> None:
    policy = RetryPolicy(max_retry_after=cap)
    for text in (str(wait), str(int(now) + wait), str(int(now * 1000) + wait * 1000)):
        parsed = parse_retry_after(text, now=now)
        assert parsed is not None
        assert 0.0 <= policy.delay(0, parsed) <= cap


@settings(max_examples=200, deadline=None)
@given(attempt=st.integers(min_value=0, max_value=40), r=st.floats(min_value=0.0, max_value=0.999))
def test_backoff_is_full_jitter(attempt: int, r: float) -> None:
    class Fixed:
        def random(self) -> float:
            return r

    policy = RetryPolicy(backoff_base=0.5, backoff_cap=30.0)
    ceiling = min(30.0, 0.5 * 2.0**attempt)
    got = policy.backoff(attempt, Fixed())  # type: ignore[arg-type]
    assert got == r * ceiling  # uniform over [0, ceiling]: r = 0 gives no wait at all
