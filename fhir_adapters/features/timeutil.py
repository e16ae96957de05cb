"""FHIR date/dateTime strings to days since 1970-01-01 (float).

Why floats of days: windows are "N days before the index date", and numpy
aggregations want one comparable number per row. Partial dates (``2019``,
``2019-05``) count from their first day.

Two clocks: ``local`` (the default for windows) reads a dateTime on the
calendar it was written in: ``2023-07-02T01:00+03:00`` is 2 July, as a
clinician at that site would say, and falls in a window that starts on
2 July exactly like a plain ``2023-07-02`` does. ``utc`` shifts by the
offset first (the same instant is 1 July 22:00 UTC). A dateTime without a
zone is read as written in both. Windows compare whole days (``floor``), so
an event at 09:00 on the index day is "day 0", inside ``to: 0``.

Observations of one encounter share a timestamp, so a small cache saves most
of the parsing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_ORD = date(1970, 1, 1).toordinal()
_CACHE: dict[str, float | None] = {}
_CACHE_LOCAL: dict[str, float | None] = {}
_CACHE_MAX = 65_536
CLOCKS = ("local", "utc")


def _parse(s: str, local: bool) -> float | None:
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
    if local or dt.tzinfo is None:
        return (dt.replace(tzinfo=None) - _EPOCH_NAIVE).total_seconds() / 86400.0
    return (dt - _EPOCH).total_seconds() / 86400.0


def to_local_days(value: object) -> float | None:
    """``to_days(value, local=True)`` without the keyword (the extraction's hot loop)."""
    if type(value) is not str:
        return None
    try:
        return _CACHE_LOCAL[value]
    except KeyError:
        return to_days(value, local=True)


def to_days(value: object, *, local: bool = False) -> float | None:
    """Days since the epoch (``local``: on the calendar of the value's own offset), or None."""
    if type(value) is not str:
        return None
    cache = _CACHE_LOCAL if local else _CACHE
    try:
        return cache[value]
    except KeyError:
        pass
    days = _parse(value, local)
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[value] = days
    return days


def birth_days(value: object) -> float | None:
    """Days of a birth date, kept at its precision: a partial date counts from its middle.

    ``1990`` is any day of 1990, so age is computed from 2 July 1990 (at most
    half a year off, never biased by a whole year); ``1990-05`` from the 16th.
    A full date is itself.
    """
    days = to_days(value, local=True)
    if days is None or type(value) is not str:
        return days
    if len(value) == 4:
        return days + (366.0 if _leap(int(value)) else 365.0) / 2 - 0.5
    if len(value) == 7:
        return days + 15.0
    return days


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def known_part(value: object, accuracy: object) -> object:
    """A date cut to the parts its accuracy code says are known.

    Codes are three letters for day, month, year (``A`` accurate, ``E``
    estimated, ``U`` unknown; HL7 Estonia's ``ee-date-accuracy-indicator``, after
    METeOR 294429): ``1990-01-01`` with ``UUA`` is "some day in 1990", ``1990``;
    with ``UAA`` it is ``1990-01``. An unknown year leaves no date.
    """
    if type(value) is not str or type(accuracy) is not str or len(accuracy) != 3:
        return value
    code = accuracy.upper()
    day, month, year = code[0], code[1], code[2]
    if year == "U":
        return None
    if month == "U":
        return value[:4]
    if day == "U":
        return value[:7]
    return value
