"""Extraction on hand-made streams: every aggregation, windows, units, maps, opt-out, min rows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fhir_adapters.errors import CohortTooSmallError
from fhir_adapters.features import FeatureSpec, extract_features
from fhir_adapters.optout import StaticOptOut
from fhir_adapters.stream import ResourceStream
from tests.fhir_adapters.helpers import LOINC, condition, obs, patient, spec_doc

GLU = [{"system": LOINC, "code": "2339-0"}, {"system": LOINC, "code": "15074-8"}]


def _feature(name: str, agg: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "events": "observation", "codes": GLU, "aggregation": agg, **extra}


def _stream() -> list[dict[str, Any]]:
    # index date 2020-01-01; window default (-inf, 0]
    return [
        patient("p1", "1980-01-01", "female"),
        obs("a", "p1", "2339-0", 100, "mg/dL", "2019-01-01T10:00:00Z"),
        obs(
            "b", "p1", "15074-8", 7.0, "mmol/L", "2019-06-01T10:00:00+02:00"
        ),  # 126.112 mg/dL, latest
        obs("c", "p1", "2339-0", 90, "mg/dL", "2018-01-01"),  # first
        obs("d", "p1", "2339-0", 300, "mg/dL", "2020-03-01"),  # after index: ignored
        obs("e", "p1", "9999-9", 5, "mg/dL", "2019-07-01"),  # other code: ignored
        patient("p2", "2000-06-15", "male"),
        obs("f", "p2", "2339-0", 80, "mg/dL", "2016-01-01"),
        patient("p3", "1950-01-01", "other"),
    ]


def _run(features: list[dict[str, Any]], stream: Any = None, **kw: Any) -> Any:
    spec = FeatureSpec.from_dict(spec_doc(features))
    return extract_features(spec, stream if stream is not None else _stream(), **kw)


def _col(m: Any, name: str) -> list[float]:
    return [float(v) for v in m.X[:, m.feature_names.index(name)]]


def _eq(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w, rel=1e-5), (got, want)


def test_every_aggregation_with_unit_normalisation() -> None:
    m = _run(
        [
            _feature("latest", "latest", unit="mg/dL"),
            _feature("first", "first", unit="mg/dL"),
            _feature("min", "min", unit="mg/dL"),
            _feature("max", "max", unit="mg/dL"),
            _feature("mean", "mean", unit="mg/dL"),
            _feature("count", "count"),
            _feature("exists", "exists"),
            _feature("latest_mmol", "latest", unit="mmol/L", analyte="glucose"),
        ]
    )
    assert m.patient_keys == ["p1", "p2", "p3"]
    assert m.X.dtype == np.float32 and m.X.shape == (3, 8)
    nan = math.nan
    _eq(_col(m, "latest"), [126.112, 80, nan])
    _eq(_col(m, "first"), [90, 80, nan])
    _eq(_col(m, "min"), [90, 80, nan])
    _eq(_col(m, "max"), [126.112, 80, nan])
    _eq(_col(m, "mean"), [(100 + 126.112 + 90) / 3, 80, nan])
    _eq(_col(m, "count"), [3, 1, 0])
    _eq(_col(m, "exists"), [1, 1, 0])
    _eq(_col(m, "latest_mmol"), [7.0, 80 / 18.016, nan])
    assert m.counts["latest"] == 2 and m.missingness["latest"] == pytest.approx(1 / 3)
    assert m.counts["count"] == 3
    assert m.report.converted_values > 0


def test_windows_age_sex_and_label() -> None:
    doc_features = [
        _feature("recent", "latest", unit="mg/dL", window={"from": -365, "to": 0}),
        {"name": "age", "type": "age"},
        {"name": "sex", "type": "one_hot", "attribute": "sex", "categories": ["female", "male"]},
    ]
    stream = [
        *_stream(),
        condition("dm", "p2", "44054006", "2021-05-01"),
        condition("x", "p3", "44054006", "2010-01-01"),
    ]
    spec_d = spec_doc(
        doc_features,
        label={
            "name": "t2d",
            "events": "condition",
            "codes": [{"system": "http://snomed.info/sct", "code": "44054006"}],
            "window": {"from": 0, "to": 730},
        },
    )
    m = extract_features(FeatureSpec.from_dict(spec_d), stream)
    nan = math.nan
    _eq(_col(m, "recent"), [126.112, nan, nan])  # p2's only value is 4 years old
    age = _col(m, "age")
    assert age[0] == pytest.approx(40.0, abs=0.01) and age[1] == pytest.approx(19.55, abs=0.01)
    _eq(_col(m, "sex=female"), [1, 0, 0])
    _eq(_col(m, "sex=male"), [0, 1, 0])
    assert m.y is not None and m.y.tolist() == [0.0, 1.0, 0.0]  # p3's diagnosis predates the window
    assert m.label_name == "t2d"


def test_last_event_index_and_event_one_hot() -> None:
    smoke = {
        "name": "smoking",
        "type": "one_hot",
        "events": "observation",
        "codes": [{"system": LOINC, "code": "72166-2"}],
        "column": "unit",  # any view column works as the category source
        "categories": ["never", "current"],
    }
    stream = [
        patient("p1"),
        obs("s1", "p1", "72166-2", 1, "current", "2019-01-01"),
        obs("s2", "p1", "72166-2", 1, "never", "2018-01-01"),
        obs("g", "p1", "2339-0", 100, "mg/dL", "2019-02-01"),
        patient("p2"),
        obs("s3", "p2", "72166-2", 1, "sometimes", "2019-01-01"),
        patient("p4"),  # no observation at all: no index date, excluded
    ]
    doc = spec_doc(
        [smoke, _feature("g", "latest", window={"from": 0, "to": 0})],
        index={"type": "last_event", "events": "observation"},
    )
    m = extract_features(FeatureSpec.from_dict(doc), stream)
    assert m.patient_keys == ["p1", "p2"]
    assert m.report.excluded_no_index == 1
    _eq(_col(m, "smoking=never"), [0, 0])
    _eq(_col(m, "smoking=current"), [1, 0])  # p2: a value outside the categories is all-zero
    _eq(_col(m, "g"), [100, math.nan])  # index = p1's last event, the glucose itself


def test_concept_maps_from_spec_and_site() -> None:
    cmap = {
        "resourceType": "ConceptMap",
        "url": "https://lab.example.org/cm",
        "group": [
            {
                "source": "http://lab.example.org",
                "target": LOINC,
                "element": [
                    {"code": "GLU", "target": [{"code": "2339-0", "equivalence": "equivalent"}]}
                ],
            }
        ],
    }
    stream = [
        patient("p1"),
        obs("l", "p1", "GLU", 99, "mg/dL", "2019-01-01", system="http://lab.example.org"),
    ]
    without = _run([_feature("g", "latest", unit="mg/dL")], stream)
    _eq(_col(without, "g"), [math.nan])
    pinned = FeatureSpec.from_dict(
        spec_doc([_feature("g", "latest", unit="mg/dL")], conceptMaps=[cmap])
    )
    m = extract_features(pinned, stream)
    _eq(_col(m, "g"), [99])
    assert m.report.concept_mapped_rows == 1
    site = _run([_feature("g", "latest", unit="mg/dL")], stream, concept_maps=[cmap])
    _eq(_col(site, "g"), [99])


def test_opt_out_removes_patients_before_anything_and_is_counted() -> None:
    m = _run([_feature("n", "count")], opt_out=StaticOptOut({"p1"}))
    assert m.patient_keys == ["p2", "p3"]
    assert m.report.excluded_opt_out == 1
    assert m.summary()["excluded_opt_out"] == 1
    _eq(_col(m, "n"), [1, 0])
    # p1's rows never reached a slot: matched rows only count p2's
    assert m.report.matched_rows["n"] == 1


class _CountingRegistry:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def is_opted_out(self, patient_key: str) -> bool:
        self.asked.append(patient_key)
        return patient_key == "p2"


def test_registry_is_asked_once_per_key() -> None:
    reg = _CountingRegistry()
    m = _run([_feature("n", "count")], opt_out=reg)
    assert sorted(reg.asked) == ["p1", "p2", "p3"]
    assert m.patient_keys == ["p1", "p3"]


def test_min_rows_refuses_and_returns_nothing() -> None:
    with pytest.raises(CohortTooSmallError) as err:
        _run([_feature("n", "count")], min_rows=4)
    assert err.value.code == "FEATURE_COHORT_TOO_SMALL"
    assert (err.value.rows, err.value.min_rows) == (3, 4)
    assert "p1" not in str(err.value)
    # opt-out counts against the minimum
    with pytest.raises(CohortTooSmallError):
        _run([_feature("n", "count")], min_rows=3, opt_out=StaticOptOut({"p3"}))
    assert _run([_feature("n", "count")], min_rows=3).n_rows == 3


def test_bad_values_are_counted_not_fatal() -> None:
    stream = [
        *_stream(),
        obs("u", "p2", "2339-0", 5, "furlongs", "2019-01-01"),  # unknown unit
        obs("v", "p2", "2339-0", 5, "kg", "2019-01-02"),  # incompatible unit
        obs("w", "ghost", "2339-0", 5, "mg/dL", "2019-01-01"),  # patient not in stream
        obs("x", "ghost", "2339-0", 6, "mg/dL", "2019-01-02"),
        {
            "resourceType": "Observation",
            "id": "y",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "2339-0"}]},
            "subject": {"reference": "Patient/p2"},
            "valueQuantity": {"value": "high", "code": "mg/dL"},
            "effectiveDateTime": "2019-01-01",
        },
    ]
    m = _run([_feature("g", "latest", unit="mg/dL")], stream)
    q = m.report.quality
    assert q.counts["unknown_unit"] == 2
    assert q.counts["dangling_reference"] == 2
    assert m.patient_keys == ["p1", "p2", "p3"]
    _eq(_col(m, "g"), [126.112, 80, math.nan])
    unit_entry = next(e for e in q.quarantine if e.kind == "unknown_unit")
    assert unit_entry.resource_type == "Observation" and unit_entry.resource_id in {"u", "v"}


def test_validation_mode_flows_through() -> None:
    stream = [*_stream(), {"resourceType": "Patient", "id": "bad", "birthDate": "1999-99-99"}]
    m = _run([_feature("n", "count")], stream, validate="full")
    assert m.report.quality.counts["invalid_resource"] == 1
    assert "bad" not in m.patient_keys
    rs = ResourceStream([_stream()], validate="sample", sample_rate=1.0)
    m2 = _run([_feature("n", "count")], rs)
    assert m2.report.quality.validated == len(_stream())


def test_summary_and_save(tmp_path: Any) -> None:
    m = _run([_feature("latest", "latest", unit="mg/dL")])
    summary = m.summary()
    assert summary["rows"] == 3 and summary["per_feature"]["latest"]["count"] == 2
    assert "p1" not in repr(summary)
    npz = m.save(tmp_path / "m.npz")
    data = np.load(npz)
    assert data["X"].shape == (3, 1) and "patient_keys" not in data
    csv_path = m.save(tmp_path / "m.csv", include_keys=True)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "patient_key,latest" and lines[3] == "p3,"


def test_release_follows_the_data_and_a_mismatch_is_flagged() -> None:
    doc = spec_doc([_feature("n", "count")])
    doc["fhirVersion"] = "R4"
    r5 = [
        {**patient("p1"), "meta": {"profile": ["https://fhir.ee/StructureDefinition/ee-patient"]}}
    ]
    m = extract_features(FeatureSpec.from_dict(doc), r5, validate="full")
    # the spec's fhirVersion decides how the data are read; the disagreement is flagged
    assert m.report.quality.fhir_versions == {"stream-0": "R4"}
    assert m.report.quality.release_conflicts == {"stream-0": 1}
    assert m.report.summary()["fhir_version_mismatch"] is True
    same = extract_features(FeatureSpec.from_dict(doc), _stream())
    assert same.report.summary()["fhir_version_mismatch"] is False


def test_validation_is_limited_to_the_types_the_views_read() -> None:
    bad_claim = {"resourceType": "Claim", "id": "c", "created": "not-a-date"}
    m = _run([_feature("n", "count")], [*_stream(), bad_claim], validate="full")
    assert m.report.quality.counts["invalid_resource"] == 0
    assert m.report.quality.validated == len(_stream())
    everything = ResourceStream([[*_stream(), bad_claim]], validate="full")
    m2 = _run([_feature("n", "count")], everything)
    assert m2.report.quality.counts["invalid_resource"] == 1


def test_first_event_index_with_codes_and_offset() -> None:
    # index = 30 days before the first diabetes diagnosis; features from the year before that
    stream = [
        patient("p1"),
        condition("d1", "p1", "44054006", "2019-06-30"),
        condition("d2", "p1", "44054006", "2020-06-30"),
        obs(
            "g1", "p1", "2339-0", 150, "mg/dL", "2019-05-01"
        ),  # in the year before the index (2019-05-31)
        obs("g2", "p1", "2339-0", 170, "mg/dL", "2019-06-15"),  # after the index: excluded
        obs("g0", "p1", "2339-0", 120, "mg/dL", "2018-01-01"),  # older than a year: excluded
        patient("p2"),  # never diagnosed: no index date
    ]
    doc = spec_doc(
        [_feature("g", "max", unit="mg/dL", window={"from": -365, "to": 0})],
        index={
            "type": "first_event",
            "events": "condition",
            "codes": [{"system": "http://snomed.info/sct", "code": "44054006"}],
            "offsetDays": -30,
        },
    )
    m = extract_features(FeatureSpec.from_dict(doc), stream)
    assert m.patient_keys == ["p1"]
    assert m.report.excluded_no_index == 1
    _eq(_col(m, "g"), [150])
