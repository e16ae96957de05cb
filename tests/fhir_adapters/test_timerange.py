"""The permit's time_range in front of feature extraction: dated outside = not used, counted."""

from __future__ import annotations

from fhir_adapters.timerange import TimeRangeFilter


def _obs(day: str | None) -> dict[str, object]:
    res: dict[str, object] = {"resourceType": "Observation", "id": f"o-{day}", "status": "final"}
    if day is not None:
        res["effectiveDateTime"] = day
    return res


def test_records_outside_or_undated_are_dropped_and_counted() -> None:
    f = TimeRangeFilter.from_iso("2015-01-01", "2025-12-31")
    resources = [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"},  # no record date
        _obs("2015-01-01T00:00:00Z"),  # first day, inclusive
        _obs("2025-12-31"),  # last day, inclusive
        _obs("2026-01-01"),  # after
        _obs("2014-12"),  # partial date before
        _obs(None),  # undated clinical record: fail closed
        {"resourceType": "Encounter", "id": "e1", "period": {"start": "2020-05-05"}},
        {"resourceType": "Condition", "id": "c1", "onsetDateTime": "2026-12-01"},
    ]
    kept = [r["id"] for r in f.apply(resources)]
    assert kept == ["p1", "o-2015-01-01T00:00:00Z", "o-2025-12-31", "e1"]
    assert f.excluded == 4
