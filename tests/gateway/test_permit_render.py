"""The readable permit shared by the console and the demo report: words, ISO dates, escaping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.permit_render import iso_time, permit_html, purpose_title
from gateway.report import ReportData, render_report
from tests.gateway.conftest import application_body


def permit_doc(**overrides: Any) -> dict[str, Any]:
    from trust import generate_jwk as generate_key

    body = application_body(generate_key(), generate_key(), **overrides)
    body.pop("duration_days")
    body.update(
        jti="permit-abc",
        iss={"id": "hdab-fi", "country": "FI"},
        iat=1796131668,
        nbf=1796131668,
        exp=1827667668,
        version=1,
        profile="ehds-permit/1",
    )
    return body


def test_a_permit_reads_in_words_and_iso_dates() -> None:
    html = permit_html(permit_doc())
    assert "2026-12-01T" in iso_time(1796131668)
    assert iso_time(1796131668) in html and "1796131668" not in html
    assert "Art. 53(1)(e)(ii): Research: training, testing and evaluating algorithms" in html
    assert "Applied (Art. 71)" in html and "True" not in html
    assert "ehr-2020-2024" in html and "2020-01-01" in html
    assert purpose_title("a").startswith("Art. 53(1)(a): Public interest")
    assert purpose_title("zz") == "unknown purpose code zz"


def test_everything_typed_by_the_applicant_is_escaped() -> None:
    doc = permit_doc(
        purpose={
            "codes": ["e"],
            "description": "<script>x()</script>",
            "declared_uses": ["marketing"],
        }
    )
    html = permit_html(doc)
    assert "<script>" not in html and "&lt;script&gt;x()&lt;/script&gt;" in html
    assert "prohibited by Art. 54" in html


def test_the_demo_report_uses_the_shared_rendering() -> None:
    doc = permit_doc()
    data = ReportData(
        title="t",
        generated_at="2026-12-01T00:00:00+00:00",
        summary=[],
        curves=[],
        permit=doc,
        audit=[],
        audit_events={},
        quality=[],
        training=[],
    )
    html = render_report(data)
    assert permit_html(doc) in html
    assert "file://" not in html and 'href="/' not in html


def test_the_demo_report_names_files_relative_to_its_folder(tmp_path: Path) -> None:
    from gateway.demo import _relative

    card = tmp_path / "models" / "model_card.json"
    assert _relative(str(card), tmp_path.resolve()) == "models/model_card.json"
    assert _relative("/elsewhere/model_card.json", tmp_path.resolve()) == "model_card.json"
    assert _relative(None, tmp_path) == "none"
