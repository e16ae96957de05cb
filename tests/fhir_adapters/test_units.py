"""UCUM conversions through ucumvert/pint plus analyte factors from data."""

from __future__ import annotations

import pytest

from fhir_adapters.errors import UnitConversionError
from fhir_adapters.units import UnitNormalizer, analyte_for_loinc, default_analytes


@pytest.fixture(scope="module")
def units() -> UnitNormalizer:
    return UnitNormalizer()


def test_glucose_molar_factor(units: UnitNormalizer) -> None:
    assert units.convert(1.0, "mmol/L", "mg/dL", "glucose") == pytest.approx(18.016, rel=1e-4)
    assert units.convert(180.16, "mg/dL", "mmol/L", "glucose") == pytest.approx(10.0, rel=1e-6)
    assert units.convert(1.0, "g/L", "mg/dL", "glucose") == pytest.approx(100.0)


def test_hba1c_ngsp_ifcc(units: UnitNormalizer) -> None:
    assert units.convert(7.0, "%", "mmol/mol", "hba1c") == pytest.approx(10.929 * (7.0 - 2.15))
    assert units.convert(53.0, "mmol/mol", "%", "hba1c") == pytest.approx(53.0 / 10.929 + 2.15)
    # without the analyte a units library would say 1 % = 10 mmol/mol; the analyte rule wins
    assert units.convert(7.0, "%", "mmol/mol") == pytest.approx(70.0)


def test_plain_ucum_and_offsets(units: UnitNormalizer) -> None:
    assert units.convert(10.0, "[lb_av]", "kg") == pytest.approx(4.5359237)
    assert units.convert(212.0, "[degF]", "Cel") == pytest.approx(100.0)
    assert units.affine("kg/m2", "kg/m2") == (1.0, 0.0)


def test_unknown_or_incompatible(units: UnitNormalizer) -> None:
    assert units.affine("furlongs!", "kg") is None
    assert units.affine("mg/dL", "mmol/L") is None  # needs a molar mass
    with pytest.raises(UnitConversionError) as err:
        units.convert(1.0, "kg", "mm[Hg]")
    assert err.value.code == "UNIT_UNKNOWN"


def test_analyte_table_is_data() -> None:
    table = default_analytes()
    assert table["glucose"].molar_mass == pytest.approx(180.16)
    assert analyte_for_loinc("4548-4") == "hba1c"
    assert analyte_for_loinc("0000-0") is None
