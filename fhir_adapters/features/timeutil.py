"""FHIR date/dateTime strings to days since 1970-01-01 (float, UTC).

Why floats of days: windows are "N days before the index date", and numpy
aggregations want one comparable number per row. Partial dates (``2019``,
``2019-05``) count from their first day; a dateTime without a zone is read
as UTC. Observations of one encounter share a timestamp, so a small cache
saves most of the parsing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORD = date(1970, 1, 1).toordinal()
_CACHE: dict[str, float | None] = {}
_CACHE_MAX = 65_536


def _parse(s: str) -> float | None:
    n = len(s)
    try:
        if n == 10:
            return float(date.fromisoformat(s).toordinal() - _EPOCH_ORD)
        if n == 4:
            return float(date(int(s), 1, 1).toordinal() - _EPOCH_ORD)
        if n == 7:
            return float(date(int(s[:4]), int(s[5:7]), 1).toordinal() - _EPOCH_ORD)
        if n < 10 or s[4] != "-":
            return None
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH).total_seconds() / 86400.0


def to_days(value: object) -> float | None:
    """Days since the epoch, or None for a missing or malformed value."""
    if type(value) is not str:
        return None
    try:
        return _CACHE[value]
    except KeyError:
        pass
    days = _parse(value)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[value] = days
    return days
