"""FHIRPath values beyond plain JSON: partial dates/times and quantities, and the
equality / ordering rules that need them.

JSON data stays as parsed (``str``, ``int``, ``float``, ``bool``, ``dict``); only
literals, typed ViewDefinition constants and boundary results are wrapped.
When a wrapped temporal meets a JSON string, the string is read with the same
kind (a ``date`` constant compared with ``birthDate`` reads ``birthDate`` as a date).
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_TIME_RE = re.compile(r"(\d{2})(?::(\d{2})(?::(\d{2}(?:\.\d+)?))?)?")
_TZ_RE = re.compile(r"Z|([+-])(\d{2}):(\d{2})")


class Temporal:
    """A FHIRPath Date, DateTime or Time with its precision (number of parts) and offset."""

    __slots__ = ("kind", "parts", "text", "tz")

    def __init__(self, kind: str, parts: tuple[Any, ...], tz: int | None, text: str) -> None:
        self.kind = kind  # "Date" | "DateTime" | "Time"
        self.parts = parts  # (Y, M, D, h, m, s.fff) — as many as the precision (Time: h, m, s)
        self.tz = tz  # offset in minutes, None when not given
        self.text = text

    def __repr__(self) -> str:
        return f"Temporal({self.kind}, {self.text!r})"

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str, kind: str) -> Temporal:
        """Read ``text`` as ``kind``; raises ValueError when it is not one."""
        if kind == "Time":
            m = _TIME_RE.fullmatch(text)
            if m is None:
                raise ValueError("not a time")
            return cls("Time", _time_parts(m), None, text)
        m = _DATE_RE.match(text)
        if m is None:
            raise ValueError("not a date")
        parts: list[Any] = [int(g) for g in m.groups() if g is not None]
        rest = text[m.end() :]
        tz: int | None = None
        if rest:
            if kind == "Date" or rest[0] != "T":
                raise ValueError("not a date")
            rest = rest[1:]
            tm = _TIME_RE.match(rest)
            if tm is not None:
                if len(parts) != 3:
                    raise ValueError("time on a partial date")
                parts.extend(_time_parts(tm))
                rest = rest[tm.end() :]
            if rest:
                zm = _TZ_RE.fullmatch(rest)
                if zm is None:
                    raise ValueError("bad timezone")
                tz = 0 if zm.group(0) == "Z" else _offset(zm)
            kind = "DateTime"
        return cls(kind, tuple(parts), tz, text)

    def utc_parts(self) -> tuple[Any, ...]:
        """Parts shifted to UTC when an offset is known and the precision reaches hours."""
        p = self.parts
        if self.tz is None or self.tz == 0 or len(p) < 4 or self.kind == "Time":
            return p
        minute = p[4] if len(p) > 4 else 0
        dt = datetime(p[0], p[1], p[2], p[3], minute) - timedelta(minutes=self.tz)
        shifted = (dt.year, dt.month, dt.day, dt.hour, dt.minute)
        return shifted[: len(p)] + p[5:]


def _time_parts(m: re.Match[str]) -> tuple[Any, ...]:
    h, mi, s = m.groups()
    out: list[Any] = [int(h)]
    if mi is not None:
        out.append(int(mi))
    if s is not None:
        out.append(float(s))
    return tuple(out)


def _offset(m: re.Match[str]) -> int:
    sign = -1 if m.group(1) == "-" else 1
    return sign * (int(m.group(2)) * 60 + int(m.group(3)))


class Quantity:
    """A FHIRPath quantity literal (value + unit). FHIR Quantity elements stay dicts."""

    __slots__ = ("unit", "value")

    def __init__(self, value: int | float, unit: str) -> None:
        self.value = value
        self.unit = unit

    def __repr__(self) -> str:
        return f"Quantity({self.value!r}, {self.unit!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and (self.value, self.unit) == (other.value, other.unit)

    def __hash__(self) -> int:
        return hash((self.value, self.unit))


def as_temporal(value: Any, kind: str) -> Temporal | None:
    """``value`` as a temporal of ``kind`` (strings are parsed), else None."""
    if isinstance(value, Temporal):
        return value
    if isinstance(value, str):
        try:
            t = Temporal.parse(value, "Time" if kind == "Time" else "DateTime")
        except ValueError:
            return None
        return t
    return None


def compare_temporal(a: Temporal, b: Temporal) -> int | None:
    """-1/0/1, or None when the precisions differ and the common prefix is equal."""
    if (a.kind == "Time") != (b.kind == "Time"):
        return None
    pa, pb = a.utc_parts(), b.utc_parts()
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            return -1 if x < y else 1
    if len(pa) == len(pb):
        return 0
    # seconds vs milliseconds are one precision in FHIRPath; other mismatches are unknown
    return None


def _temporal_pair(a: Any, b: Any) -> tuple[Temporal, Temporal] | None:
    if isinstance(a, Temporal):
        tb = as_temporal(b, a.kind)
        return None if tb is None else (a, tb)
    if isinstance(b, Temporal):
        ta = as_temporal(a, b.kind)
        return None if ta is None else (ta, b)
    return None


def _is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) or isinstance(v, Decimal)


def item_equal(a: Any, b: Any) -> bool | None:
    """FHIRPath ``=`` on two single items: True, False, or None (unknown)."""
    ta, tb = type(a), type(b)
    if ta is Quantity or tb is Quantity:
        from fhir_adapters.fhirpath.quantity import quantities_equal

        return quantities_equal(a, b)
    if ta is tb and ta is not Temporal:
        return bool(a == b)
    if ta is Temporal or tb is Temporal:
        pair = _temporal_pair(a, b)
        if pair is None:
            return False
        c = compare_temporal(*pair)
        return None if c is None else c == 0
    if ta is bool or tb is bool:
        return False
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return False


def item_equivalent(a: Any, b: Any) -> bool:
    """FHIRPath ``~``: case/whitespace-insensitive strings, unknown precision is False."""
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    if _is_number(a) and _is_number(b) and type(a) is not bool and type(b) is not bool:
        da, db = to_decimal(a), to_decimal(b)
        if da is None or db is None:
            return False
        places = min(-da.as_tuple().exponent, -db.as_tuple().exponent, 8)  # type: ignore[operator]
        q = Decimal(1).scaleb(-max(int(places), 0))
        return da.quantize(q) == db.quantize(q)
    return bool(item_equal(a, b))


def compare_items(a: Any, b: Any) -> int | None:
    """Ordering of two single items (for ``< > <= >=``); None when not comparable."""
    ta, tb = type(a), type(b)
    if ta is Temporal or tb is Temporal:
        pair = _temporal_pair(a, b)
        return None if pair is None else compare_temporal(*pair)
    if ta is bool or tb is bool:
        return None
    if _is_number(a) and _is_number(b):
        return -1 if a < b else (1 if a > b else 0)
    if ta is str and tb is str:
        return -1 if a < b else (1 if a > b else 0)
    if ta is Quantity or tb is Quantity:
        from fhir_adapters.fhirpath.quantity import compare_quantities

        return compare_quantities(a, b)
    return None


def to_decimal(v: Any) -> Decimal | None:
    """Exact decimal of a JSON number (via its shortest repr, so 0.1 stays 0.1)."""
    try:
        return Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    except (InvalidOperation, TypeError, ValueError):
        return None


def decimal_places(v: Any) -> int:
    """Number of significant decimal places written in ``v`` (1.0 -> 1, 3 -> 0)."""
    d = to_decimal(v)
    if d is None:
        return 0
    exp = d.as_tuple().exponent
    return max(-exp, 0) if isinstance(exp, int) else 0


# Calendar duration units (FHIRPath keywords and their UCUM codes) -> canonical unit.
_DURATION_UNITS: dict[str, str] = {
    **{u: "year" for u in ("year", "years", "a")},
    **{u: "month" for u in ("month", "months", "mo")},
    **{u: "week" for u in ("week", "weeks", "wk")},
    **{u: "day" for u in ("day", "days", "d")},
    **{u: "hour" for u in ("hour", "hours", "h")},
    **{u: "minute" for u in ("minute", "minutes", "min")},
    **{u: "second" for u in ("second", "seconds", "s")},
    **{u: "millisecond" for u in ("millisecond", "milliseconds", "ms")},
}
_SECONDS = {
    "week": 604800,
    "day": 86400,
    "hour": 3600,
    "minute": 60,
    "second": 1,
    "millisecond": 0.001,
}
# parts needed before a unit can be applied exactly (Y, M, D, h, m, s)
_PRECISION = {"day": 3, "hour": 4, "minute": 5, "second": 6, "millisecond": 6}


def temporal_add(t: Temporal, q: Quantity, sign: int) -> Temporal | None:
    """``date ± quantity`` (FHIRPath §6.6.1): calendar units, result at the input's precision.

    Years and months move the calendar fields (the day is clamped to the month's
    end); shorter units are applied as elapsed time when the value is precise
    enough, else truncated to whole units of the value's precision (a Date plus
    36 hours is a Date plus 1 day). Returns None for non-calendar units.
    """
    unit = _DURATION_UNITS.get(q.unit)
    if unit is None or t.kind == "Time" or not isinstance(q.value, int | float):
        return None
    p = list(t.parts)
    n = len(p)
    amount = q.value * sign
    if unit in ("year", "month"):
        months = int(amount) * (12 if unit == "year" else 1)
        if n == 1 and unit == "month":
            months = (abs(months) // 12) * (1 if months >= 0 else -1) * 12
        y, m = divmod((p[0] * 12 + (p[1] - 1 if n > 1 else 0)) + months, 12)
        p[0] = y
        if n > 1:
            p[1] = m + 1
        if n > 2:
            p[2] = min(p[2], calendar.monthrange(p[0], p[1])[1])
        return _temporal_from_parts(t, p)
    seconds = amount * _SECONDS[unit]
    if n < 3:
        return None if abs(seconds) < 86400 * 28 else _temporal_from_parts(t, p)
    precision_unit = {3: "day", 4: "hour", 5: "minute"}.get(n, "second")
    if n < _PRECISION[unit] or n < 6:
        step = _SECONDS[precision_unit]
        seconds = int(seconds / step) * step
    hour = int(p[3]) if n > 3 else 0
    minute = int(p[4]) if n > 4 else 0
    base = datetime(p[0], p[1], p[2], hour, minute)
    frac = float(p[5]) if n > 5 else 0.0
    moved = base + timedelta(seconds=seconds + frac)
    out: list[Any] = [moved.year, moved.month, moved.day, moved.hour, moved.minute]
    out.append(moved.second + moved.microsecond / 1e6)
    return _temporal_from_parts(t, out[:n])


def _temporal_from_parts(t: Temporal, p: list[Any]) -> Temporal:
    text = f"{p[0]:04d}"
    if len(p) > 1:
        text += f"-{p[1]:02d}"
    if len(p) > 2:
        text += f"-{p[2]:02d}"
    if len(p) > 3:
        text += f"T{p[3]:02d}"
    if len(p) > 4:
        text += f":{p[4]:02d}"
    if len(p) > 5:
        sec = float(p[5])
        text += f":{sec:06.3f}" if not sec.is_integer() else f":{int(sec):02d}"
    if t.tz is not None and len(p) > 3:
        tz = t.tz
        text += (
            "Z" if tz == 0 else f"{'-' if tz < 0 else '+'}{abs(tz) // 60:02d}:{abs(tz) % 60:02d}"
        )
    kind = "Date" if t.kind == "Date" else "DateTime"
    return Temporal(kind, tuple(p), t.tz, text)
