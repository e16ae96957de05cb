from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from permits.errors import PermitModelError
from permits.model import (
    MAX_VALIDITY_SECONDS,
    Permit,
    parse_permit,
    permit_json_schema,
    schema_text,
)
from permits.purposes import PurposeCode, prohibited_uses, purpose_violations

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "permit.example.json"


def _example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return data


def test_schema_file_is_generated_from_the_model() -> None:
    assert (ROOT / "docs" / "permit.schema.json").read_text() == schema_text()


def test_schema_names_the_articles() -> None:
    text = json.dumps(permit_json_schema())
    for article in (
        "Art. 68(12)",
        "Art. 68(13)",
        "Art. 53(1)",
        "Art. 68(10)(d)",
        "Art. 71(4)",
        "Art. 67(3)",
    ):
        assert article in text


def test_example_is_a_valid_permit() -> None:
    permit = Permit.model_validate(_example())
    assert permit.required_issuers() == {"hdab-fi", "hdab-se"}
    assert parse_permit(permit.payload()) == permit
    assert permit.permit_hash().startswith("sha256:")


def _invalid(mutate: Any) -> None:
    data = copy.deepcopy(_example())
    mutate(data)
    with pytest.raises(ValidationError):
        Permit.model_validate(data)


def test_rules_of_the_regulation_are_in_the_model() -> None:
    _invalid(lambda d: d.update(exp=d["nbf"] + MAX_VALIDITY_SECONDS + 1))  # Art. 68(12)
    _invalid(lambda d: d.update(exp=d["nbf"]))
    _invalid(lambda d: d["processing"]["federated_xgboost"].update(min_rows_per_leaf=4))
    _invalid(lambda d: d.update(version=1))  # supersedes without amendment
    _invalid(lambda d: d.update(supersedes=None))  # amendment without supersedes
    _invalid(lambda d: d.update(opt_out={"applied": False}))  # exception needs a justification
    _invalid(
        lambda d: d.update(opt_out={"applied": True, "exception": "art71.4", "justification": "x"})
    )
    _invalid(lambda d: d["cross_border"].update(lead="hdab-xx"))
    _invalid(lambda d: d["cross_border"].update(co_issuers=["hdab-fi"]))
    _invalid(lambda d: d["data"].append(copy.deepcopy(d["data"][0])))
    _invalid(lambda d: d["authorised_persons"][0].update(kid=d["holder_of_permit"]["kid"]))
    _invalid(lambda d: d.update(unknown_member=1))
    _invalid(lambda d: d["data"][0].update(feature_spec_hash="md5:abc"))
    _invalid(lambda d: d["purpose"].update(codes=["z"]))
    _invalid(lambda d: d["data"][0]["time_range"].update(start="2030-01-01"))


def test_opt_out_exception_with_justification_is_valid() -> None:
    data = _example()
    data["opt_out"] = {
        "applied": False,
        "exception": "art71.4",
        "justification": "Art. 71(4)(a) national law X",
    }
    assert not Permit.model_validate(data).opt_out.applied


def test_parse_permit_is_strict() -> None:
    payload = Permit.model_validate(_example()).payload()
    with pytest.raises(PermitModelError):
        parse_permit(payload.replace(b'"version":2', b'"version":"2"'))
    with pytest.raises(PermitModelError):
        parse_permit(payload[:-1] + b',"version":3}')  # duplicate member
    with pytest.raises(PermitModelError):
        parse_permit(b"\xff")


def test_purposes() -> None:
    assert prohibited_uses(["marketing", "model_training"]) == ["art54.c"]
    assert purpose_violations([PurposeCode.STATISTICS], [], public_sector=False) == [
        "public_sector_only"
    ]
    assert purpose_violations([PurposeCode.STATISTICS], [], public_sector=True) == []
    assert purpose_violations(
        [PurposeCode.RESEARCH_AI], ["insurance_pricing"], public_sector=True
    ) == ["prohibited_use"]


@pytest.mark.parametrize("depth", [300, 900, 2000])
def test_deeply_nested_json_is_refused_cleanly(depth: int) -> None:
    from trust import strict_json

    nested = b'{"a":' * depth + b"1" + b"}" * depth
    for data in (nested, b" " + nested):
        with pytest.raises(ValueError):
            strict_json(data)
