"""Quantity equality and ordering with unit conversion (FHIRPath §6.1, §6.2).

Why: ``value.ofType(Quantity) > 5 'mg'`` on a 6 mg value and
``5 'mg' = 5000 'ug'`` must be true; without conversion the first gave empty
and the second false, which a ``where`` reads as "no match" without any
error. Units are UCUM (``Quantity.code`` when the system is UCUM or absent,
else ``Quantity.unit``), converted through :mod:`fhir_adapters.units`
(one affine map per unit pair, cached). Calendar keywords follow the
specification: ``week`` and shorter equal their UCUM units (``1 day = 1 'd'``);
``year``/``month`` compare only with each other (``1 year = 12 months``),
because a calendar year is not a fixed number of seconds.

A FHIR Quantity carrying a ``comparator`` (``<5 mg``) has no single value:
comparisons with it are empty (unknown), never a guess.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir_adapters.fhirpath.values import Quantity, to_decimal

UCUM = "http://unitsofmeasure.org"

_CALENDAR_TO_UCUM = {
    **{u: "wk" for u in ("week", "weeks")},
    **{u: "d" for u in ("day", "days")},
    **{u: "h" for u in ("hour", "hours")},
    **{u: "min" for u in ("minute", "minutes")},
    **{u: "s" for u in ("second", "seconds")},
    **{u: "ms" for u in ("millisecond", "milliseconds")},
}
_CALENDAR_MONTHS = {"year": 12, "years": 12, "month": 1, "months": 1}


def quantity_unit(d: dict[str, Any]) -> str | None:
    """The UCUM unit of a FHIR Quantity element (``code`` when UCUM, else ``unit``)."""
    system = d.get("system")
    code = d.get("code")
    if type(code) is str and (system is None or system == UCUM):
        return code
    unit = d.get("unit")
    return unit if type(unit) is str else None


def as_quantity(v: Any) -> Quantity | None:
    """A FHIRPath Quantity for a literal or a FHIR Quantity element (None if not one)."""
    if type(v) is Quantity:
        return v
    if type(v) is dict and "resourceType" not in v and "comparator" not in v:
        value = v.get("value")
        if (type(value) is int or type(value) is float) and ("code" in v or "unit" in v):
            unit = quantity_unit(v)
            if unit is not None:
                return Quantity(value, unit)
    return None


@lru_cache(maxsize=256)
def _factor(from_unit: str, to_unit: str) -> tuple[float, float] | None:
    """Affine map ``from_unit -> to_unit``, or None when the units are not comparable."""
    if from_unit == to_unit:
        return (1.0, 0.0)
    fm, tm = _CALENDAR_MONTHS.get(from_unit), _CALENDAR_MONTHS.get(to_unit)
    if fm is not None or tm is not None:
        if fm is None or tm is None:
            return None
        return (fm / tm, 0.0)
    src = _CALENDAR_TO_UCUM.get(from_unit, from_unit)
    dst = _CALENDAR_TO_UCUM.get(to_unit, to_unit)
    if src == dst:
        return (1.0, 0.0)
    from fhir_adapters.errors import UnitConversionError
    from fhir_adapters.units import ucum_affine

    try:
        return ucum_affine(src, dst)
    except UnitConversionError:
        return None


def _aligned(a: Quantity, b: Quantity) -> tuple[Any, Any] | None:
    """Both values in ``b``'s unit (decimals, so 5 mg -> 5000 ug is exact), or None."""
    f = _factor(a.unit, b.unit)
    if f is None:
        return None
    da, db = to_decimal(a.value), to_decimal(b.value)
    if da is None or db is None:
        return None
    if f == (1.0, 0.0):
        return da, db
    scale, offset = to_decimal(f[0]), to_decimal(f[1])
    assert scale is not None and offset is not None
    # the UCUM factor is a binary float: round to 15 significant digits so 1000.0000000000001 is 1000
    converted = +(da * scale + offset).normalize()
    return round(converted, 12 - converted.adjusted()) if converted else converted, db


def compare_quantities(a: Any, b: Any) -> int | None:
    """-1/0/1 for two quantities after unit conversion; None when not comparable."""
    qa, qb = as_quantity(a), as_quantity(b)
    if qa is None or qb is None:
        return None
    pair = _aligned(qa, qb)
    if pair is None:
        return None
    x, y = pair
    return -1 if x < y else (1 if x > y else 0)


def quantities_equal(a: Any, b: Any) -> bool | None:
    """FHIRPath ``=`` on quantities: False for different dimensions, None when unknown."""
    qa, qb = as_quantity(a), as_quantity(b)
    if qa is None or qb is None:
        return (
            None
            if (type(a) is dict and "comparator" in a) or (type(b) is dict and "comparator" in b)
            else False
        )
    c = compare_quantities(qa, qb)
    return False if c is None else c == 0
