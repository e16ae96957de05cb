"""``Retry-After`` as real servers send it: seconds, an HTTP-date, or an absolute epoch.

RFC 9110 allows delay-seconds or an HTTP-date. Real Bulk Data servers also
send an absolute Unix time, in milliseconds on one answer and in seconds on
the next (``1796133498898``, then ``1796132648``). Read as a delay, such a
number is decades, so the client gave up on a server that only asked it to
wait a few minutes. The forms are told apart by magnitude against the current
time: a number near ``now`` in milliseconds is a millisecond epoch, one near
``now`` in seconds is a second epoch, anything far smaller is a delay.

Pure: the caller passes ``now`` (epoch seconds) in tests; capping is the
caller's business (:class:`~fhir_adapters.sources.http.RetryPolicy`).
"""

from __future__ import annotations

import email.utils
import math
import time
from datetime import UTC, datetime

#: A plain number at least this fraction of ``now`` (about 13 years back) is an
#: absolute time, not a delay: nobody asks a client to wait 40 years.
_EPOCH_FRACTION = 0.75
#: Millisecond epochs are about 1000x the second epoch; anything this many
#: times ``now`` or more is read as milliseconds.
_MS_FACTOR = 100.0


def _now_seconds(now: datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp()
    return float(now)


def classify_number(value: float, now: float) -> str:
    """``"delay"``, ``"epoch_s"`` or ``"epoch_ms"`` for a numeric ``Retry-After``."""
    if value >= now * _MS_FACTOR:
        return "epoch_ms"
    if value >= now * _EPOCH_FRACTION:
        return "epoch_s"
    return "delay"


def parse_retry_after(value: str | None, *, now: datetime | float | None = None) -> float | None:
    """Seconds to wait (never negative) from a ``Retry-After`` header, or ``None``.

    Accepts delay-seconds (fractions too), an HTTP-date, or an absolute epoch
    in seconds or milliseconds. A time in the past means "now" (``0.0``).
    Garbage, negative or non-finite numbers give ``None`` (the caller falls
    back to its own backoff).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    current = _now_seconds(now)
    try:
        number = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - current)
    if not math.isfinite(number) or number < 0:
        return None
    kind = classify_number(number, current)
    if kind == "epoch_ms":
        return max(0.0, number / 1000.0 - current)
    if kind == "epoch_s":
        return max(0.0, number - current)
    return number


__all__ = ["classify_number", "parse_retry_after"]
