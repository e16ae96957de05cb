"""``lowBoundary([precision])`` / ``highBoundary([precision])`` (FHIRPath §5.7.x).

Why a module of its own: the boundary of a value depends on how precisely it
was *written* (``1.587`` stands for [1.5865, 1.5875), ``1965`` for the whole
year) and on the precision asked for (``birthDate.highBoundary(6)`` is a
month, ``1.587.lowBoundary(2)`` is ``1.58``). Getting either wrong gives a
plausible but wrong value with no error, so both are handled here, once.

Precision is counted in digits, as the specification does: Date/DateTime
4 (year), 6 (month), 8 (day), 10 (hour), 12 (minute), 14 (second),
17 (millisecond); Time 2, 4, 6, 9; Decimal the number of decimal places (at
most :data:`MAX_DECIMAL_PRECISION`). A precision the type cannot have gives
an empty result, never a guess.
"""

from __future__ import annotations

import calendar
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from fhir_adapters.fhirpath.values import Quantity, Temporal, decimal_places, to_decimal

MAX_DECIMAL_PRECISION = 28  # Python's default decimal context: beyond it, the result is empty
DEFAULT_DECIMAL_PRECISION = 8

# digits of precision -> number of (Y, M, D, h, m, s) parts, and whether milliseconds show
_DATE_PRECISION: dict[int, tuple[int, bool]] = {
    4: (1, False),
    6: (2, False),
    8: (3, False),
    10: (4, False),
    12: (5, False),
    14: (6, False),
    17: (6, True),
}
_TIME_PRECISION: dict[int, tuple[int, bool]] = {
    2: (1, False),
    4: (2, False),
    6: (3, False),
    9: (3, True),
}
_DEFAULT_PRECISION = {"Date": 8, "DateTime": 17, "Time": 9}


def decimal_boundary(value: Any, high: bool, precision: int | None = None) -> float | None:
    """The least/greatest decimal ``value`` can stand for, to ``precision`` places.

    ``1.587`` denotes [1.5865, 1.5875]; at 2 places that is [1.58, 1.59]
    (the low end rounded down, the high end rounded up, so the result still
    contains every value the input can mean).
    """
    if precision is not None and not 0 <= precision <= MAX_DECIMAL_PRECISION:
        return None
    d = to_decimal(value)
    if d is None:
        return None
    half = Decimal(5).scaleb(-(decimal_places(value) + 1))
    edge = d + half if high else d - half
    if precision is None:
        return float(edge)
    q = Decimal(1).scaleb(-precision)
    return float(edge.quantize(q, rounding=ROUND_CEILING if high else ROUND_FLOOR))


def temporal_boundary(t: Temporal, high: bool, precision: int | None = None) -> Temporal | None:
    """Earliest/latest Date, DateTime or Time ``t`` can denote, at ``precision`` digits."""
    table = _TIME_PRECISION if t.kind == "Time" else _DATE_PRECISION
    p_digits = _DEFAULT_PRECISION[t.kind] if precision is None else precision
    spec = table.get(p_digits)
    if spec is None or (t.kind == "Date" and spec[0] > 3):
        return None
    n, millis = spec
    if t.kind == "Time":
        return _time_boundary(t, high, n, millis)
    p = list(t.parts)
    year = p[0]
    month = p[1] if len(p) > 1 else (12 if high else 1)
    day = p[2] if len(p) > 2 else (calendar.monthrange(year, month)[1] if high else 1)
    hour = p[3] if len(p) > 3 else (23 if high else 0)
    minute = p[4] if len(p) > 4 else (59 if high else 0)
    sec = p[5] if len(p) > 5 else None
    full: list[Any] = [year, month, day, hour, minute]
    text = f"{year:04d}"
    if n > 1:
        text += f"-{month:02d}"
    if n > 2:
        text += f"-{day:02d}"
    if n > 3:
        text += f"T{hour:02d}"
    if n > 4:
        text += f":{minute:02d}"
    if n > 5:
        sec_text = _sec_text(sec, high, millis)
        text += f":{sec_text}"
        full.append(float(sec_text))
    tz = t.tz
    if n > 3 and t.kind == "DateTime":
        if tz is None:  # unknown zone: the earliest/latest offset any clock could have
            tz = -720 if high else 840
        sign = "-" if tz < 0 else "+"
        text += f"{sign}{abs(tz) // 60:02d}:{abs(tz) % 60:02d}"
    elif n <= 3:
        tz = None
    return Temporal(t.kind, tuple(full[:n]), tz, text)


def _time_boundary(t: Temporal, high: bool, n: int, millis: bool) -> Temporal:
    p = list(t.parts)
    h = p[0]
    mi = p[1] if len(p) > 1 else (59 if high else 0)
    text = f"{h:02d}"
    parts: list[Any] = [h]
    if n > 1:
        text += f":{mi:02d}"
        parts.append(mi)
    if n > 2:
        sec_text = _sec_text(p[2] if len(p) > 2 else None, high, millis)
        text += f":{sec_text}"
        parts.append(float(sec_text))
    return Temporal("Time", tuple(parts), None, text)


def _sec_text(s: float | None, high: bool, millis: bool) -> str:
    if s is None:
        if not millis:
            return "59" if high else "00"
        return "59.999" if high else "00.000"
    whole = int(s)
    if not millis:
        return f"{whole:02d}"
    if float(s).is_integer():
        return f"{whole:02d}.999" if high else f"{whole:02d}.000"
    return f"{s:06.3f}"


def period_boundary(period: dict[str, Any], high: bool, precision: int | None) -> Temporal | None:
    """A Period's boundary: the low boundary of ``start`` / the high boundary of ``end``.

    An open end (no ``end``: ongoing; no ``start``: unknown) has no boundary.
    """
    edge = period.get("end" if high else "start")
    if type(edge) is not str:
        return None
    try:
        t = Temporal.parse(edge, "DateTime")
    except ValueError:
        return None
    return temporal_boundary(t, high, precision)


def quantity_boundary(q: Quantity, high: bool, precision: int | None) -> Quantity | None:
    value = decimal_boundary(q.value, high, precision)
    return None if value is None else Quantity(value, q.unit)
