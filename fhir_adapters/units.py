"""Unit normalisation: UCUM through ucumvert/pint, analyte factors from data.

Why not a hand-written table: a site in Tartu reports glucose in mmol/L, one
in Lisbon in mg/dL, a third in mg/L; UCUM is the standard FHIR uses
(``Quantity.code`` with system ``http://unitsofmeasure.org``) and a UCUM
parser converts any valid pair. Two things UCUM cannot know live in
``data/analytes.json``: molar masses (mass <-> substance concentration) and
non-dimensional calibrations such as HbA1c NGSP % <-> IFCC mmol/mol (both
are "dimensionless", so a units library would happily convert 1 % to
10 mmol/mol, which is wrong).

Conversions are affine (``scale * x + offset``) and cached per
(from, to, analyte): pint runs once per distinct unit pair, never per value.
The pint registry takes ~2 s to build, so it is loaded only when a pair is
not an identity.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources as importlib_resources
from typing import Any

from fhir_adapters.errors import UnitConversionError

Affine = tuple[float, float]  # (scale, offset): target = scale * source + offset


@dataclass(frozen=True, slots=True)
class Analyte:
    """What an analyte needs beyond UCUM."""

    name: str
    loinc: tuple[str, ...] = ()
    molar_mass: float | None = None  # g/mol
    affine: tuple[tuple[str, str, float, float], ...] = ()  # (from, to, scale, offset)


@lru_cache(maxsize=1)
def default_analytes() -> dict[str, Analyte]:
    """The analyte table shipped in ``fhir_adapters/data/analytes.json``."""
    text = importlib_resources.files("fhir_adapters").joinpath("data/analytes.json").read_text()
    return parse_analytes(json.loads(text))


def parse_analytes(data: Mapping[str, Any]) -> dict[str, Analyte]:
    out: dict[str, Analyte] = {}
    for name, item in (data.get("analytes") or {}).items():
        rules = []
        for rule in item.get("affine") or ():
            scale = float(rule["scale"])
            offset = float(rule.get("offset", 0.0))
            rules.append((str(rule["from"]), str(rule["to"]), scale, offset))
            # the inverse, so the table states each calibration once
            rules.append((str(rule["to"]), str(rule["from"]), 1.0 / scale, -offset / scale))
        mm = item.get("molar_mass_g_per_mol")
        out[name] = Analyte(
            name=name,
            loinc=tuple(item.get("loinc") or ()),
            molar_mass=float(mm) if mm is not None else None,
            affine=tuple(rules),
        )
    return out


def analyte_for_loinc(code: str) -> str | None:
    for analyte in default_analytes().values():
        if code in analyte.loinc:
            return analyte.name
    return None


@lru_cache(maxsize=1)
def _registry() -> Any:
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


def _ucum(unit: str) -> Any:
    reg = _registry()
    try:
        q = reg.from_ucum(unit)
    except Exception as exc:  # ucumvert.InvalidUcumError, pint errors
        raise UnitConversionError(f"not a valid UCUM unit: {unit!r}") from exc
    return q if hasattr(q, "units") else reg.Quantity(1.0, q)


def ucum_affine(from_unit: str, to_unit: str, molar_mass: float | None = None) -> Affine:
    """``(scale, offset)`` converting ``from_unit`` to ``to_unit`` via UCUM/pint.

    With ``molar_mass`` (g/mol), mass and substance concentrations convert
    into each other (mg/dL <-> mmol/L).
    """
    reg = _registry()
    src = _ucum(from_unit)
    dst = _ucum(to_unit)

    def convert(x: float) -> float:
        q = reg.Quantity(x * src.magnitude, src.units)
        try:
            return float(q.to(dst.units).magnitude / dst.magnitude)
        except Exception as exc:
            if molar_mass is None:
                raise UnitConversionError(f"cannot convert {from_unit!r} to {to_unit!r}") from exc
            mm = reg.Quantity(molar_mass, "g/mol")
            for candidate in (q * mm, q / mm):
                try:
                    return float(candidate.to(dst.units).magnitude / dst.magnitude)
                except Exception:
                    continue
            raise UnitConversionError(
                f"cannot convert {from_unit!r} to {to_unit!r}, even with the molar mass"
            ) from exc

    zero = convert(0.0)
    one = convert(1.0)
    return (one - zero, zero)


class UnitNormalizer:
    """Converts values to a feature's unit; caches one affine map per unit pair."""

    def __init__(self, analytes: Mapping[str, Analyte] | None = None) -> None:
        self.analytes = dict(analytes) if analytes is not None else default_analytes()
        self._cache: dict[tuple[str, str, str | None], Affine | None] = {}

    def affine(self, from_unit: str, to_unit: str, analyte: str | None = None) -> Affine | None:
        """The conversion, or None when the unit is unknown or incompatible."""
        key = (from_unit, to_unit, analyte)
        try:
            return self._cache[key]
        except KeyError:
            pass
        result: Affine | None
        try:
            result = self._compute(from_unit, to_unit, analyte)
        except UnitConversionError:
            result = None
        self._cache[key] = result
        return result

    def _compute(self, from_unit: str, to_unit: str, analyte: str | None) -> Affine:
        if from_unit == to_unit:
            return (1.0, 0.0)
        info = self.analytes.get(analyte) if analyte else None
        if info is not None:
            for src, dst, scale, offset in info.affine:
                if src == from_unit and dst == to_unit:
                    return (scale, offset)
                # a calibration rule fixes the meaning of its units for this analyte:
                # convert into the rule's source unit first, then apply it
            for src, dst, scale, offset in info.affine:
                if dst == to_unit:
                    pre = ucum_affine(from_unit, src)
                    return (scale * pre[0], scale * pre[1] + offset)
        result = ucum_affine(from_unit, to_unit, info.molar_mass if info else None)
        if not all(math.isfinite(v) for v in result):
            raise UnitConversionError(f"cannot convert {from_unit!r} to {to_unit!r}")
        return result

    def convert(
        self, value: float, from_unit: str, to_unit: str, analyte: str | None = None
    ) -> float:
        """Convert one value; raises :class:`UnitConversionError` on an unknown unit."""
        aff = self.affine(from_unit, to_unit, analyte)
        if aff is None:
            raise UnitConversionError(f"cannot convert {from_unit!r} to {to_unit!r}")
        return aff[0] * value + aff[1]
