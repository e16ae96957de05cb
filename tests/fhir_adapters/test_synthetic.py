"""The synthetic cohort: reproducible, non-IID, written as NDJSON and Bundles, learnable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fhir_adapters.features import extract_features
from fhir_adapters.testing.synthetic import (
    CohortConfig,
    ground_truth,
    site_profiles,
    site_resources,
    synthetic_spec,
    write_bundles,
    write_ndjson,
)


def test_reproducible_by_seed() -> None:
    cfg = CohortConfig(n_patients=60, n_sites=2, seed=7)
    assert list(site_resources(cfg, 1)) == list(site_resources(cfg, 1))
    other = list(site_resources(CohortConfig(n_patients=60, n_sites=2, seed=8), 1))
    assert other != list(site_resources(cfg, 1))
    assert sum(cfg.site_sizes()) == 60


def test_sites_are_non_iid() -> None:
    profiles = site_profiles(4)
    assert {p.glucose_unit for p in profiles} == {"mg/dL", "mmol/L"}
    assert {p.hba1c_unit for p in profiles} == {"%", "mmol/mol"}
    assert len({p.age_mean for p in profiles}) == 4
    assert len({p.prevalence_shift for p in profiles}) == 4
    assert [p.dialect for p in profiles] == [0, 1, 2, 3]


def test_extraction_matches_truth_across_units_and_local_codes() -> None:
    cfg = CohortConfig(n_patients=400, n_sites=4, seed=3)
    spec = synthetic_spec()
    glucose_means = []
    for site in range(4):
        m = extract_features(spec, site_resources(cfg, site))
        truth = ground_truth(cfg, site)
        assert m.n_rows == len(truth)
        assert m.report.quality.problems == 0
        assert m.y is not None
        assert m.y.tolist() == [float(truth[k][0]) for k in m.patient_keys]
        g = m.X[:, m.feature_names.index("glucose")]
        a = m.X[:, m.feature_names.index("hba1c")]
        assert 0.6 < np.mean(~np.isnan(g)) < 0.95 and 0.5 < np.mean(~np.isnan(a)) < 0.9
        glucose_means.append(float(np.nanmean(g)))
        assert 4.5 < float(np.nanmean(a)) < 6.5  # all in %, whatever the site reported
        if site > 0:  # local dialects: only reachable through the pinned ConceptMaps
            assert m.report.concept_mapped_rows > 0
    assert all(80 < g < 115 for g in glucose_means)  # mmol/L sites converted to mg/dL


def test_ndjson_and_bundles_give_the_same_matrix(tmp_path: Path) -> None:
    cfg = CohortConfig(n_patients=50, n_sites=2, seed=5)
    spec = synthetic_spec()
    nd = write_ndjson(cfg, tmp_path / "nd", gz=True)
    bu = write_bundles(cfg, tmp_path / "bu", patients_per_bundle=7)
    assert (nd[1] / "ConceptMap.ndjson.gz").exists()
    for a, b in zip(nd, bu, strict=True):
        ma = extract_features(spec, a)
        mb = extract_features(spec, b)
        assert ma.patient_keys == mb.patient_keys
        np.testing.assert_array_equal(ma.X, mb.X)
        assert mb.report.quality.problems == 0


@pytest.mark.slow
def test_centralized_xgboost_auc_in_the_promised_band() -> None:
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    cfg = CohortConfig(n_patients=6000, n_sites=3, seed=11)
    spec = synthetic_spec()
    mats = [extract_features(spec, site_resources(cfg, s)) for s in range(3)]
    X = np.vstack([m.X for m in mats])
    y = np.concatenate([m.y for m in mats if m.y is not None])
    rng = np.random.default_rng(0)
    test = rng.random(len(y)) < 0.3
    model = xgb.XGBClassifier(n_estimators=150, max_depth=4, learning_rate=0.08, n_jobs=1)
    model.fit(X[~test], y[~test])
    auc = roc_auc_score(y[test], model.predict_proba(X[test])[:, 1])
    assert 0.75 <= auc <= 0.9, auc


def test_generated_resources_are_valid_fhir_r4() -> None:
    from fhir_adapters.testing.synthetic import concept_maps
    from fhir_adapters.validation import validation_errors

    cfg = CohortConfig(n_patients=24, n_sites=4, seed=2)
    resources = [r for s in range(4) for r in site_resources(cfg, s)]
    assert {r["resourceType"] for r in resources} == {"Patient", "Observation", "Condition"}
    for r in [*resources, *concept_maps()]:
        assert validation_errors(r, "R4") == [], (r["resourceType"], r["id"])
