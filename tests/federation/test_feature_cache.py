"""Site features cached per (spec hash, data snapshot, opt-out version), audited per job.

Real FHIR NDJSON from the synthetic generator, the real extractor, the real permit
guard; the coordinator talks to the sites through the in-process grid.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fhir_adapters.features as features_module
from federation import client_app
from federation.adapters import spec_hash_of
from federation.feature_cache import cache_key, registry_version, snapshot_version
from federation.job import BoosterParams, TrainingJob
from federation.jobs import local_fhir_job
from federation.server_app import run_coordinator
from federation.testing.devpermit import DevPermitWorld, build_permit_world
from federation.testing.inprocess import InProcessGrid
from fhir_adapters.features import FeatureSpec
from fhir_adapters.testing.synthetic import CohortConfig, synthetic_spec_document, write_ndjson


@pytest.fixture(autouse=True)
def _fresh_process_cache() -> Iterator[None]:
    client_app._FEATURES.clear()
    client_app._EXTRACTED.clear()
    yield
    client_app._FEATURES.clear()
    client_app._EXTRACTED.clear()


@pytest.fixture
def cohort(tmp_path: Path) -> tuple[dict[str, Path], dict[str, Any], DevPermitWorld]:
    folders = write_ndjson(CohortConfig(n_patients=600, n_sites=2, seed=3), tmp_path / "fhir")
    spec = synthetic_spec_document()
    permit = build_permit_world(
        tmp_path / "permit", holders=[f.name for f in folders], spec_hash=spec_hash_of(spec)
    )
    return {f.name: f for f in folders}, spec, permit


def _job(
    tmp_path: Path,
    cohort: tuple[dict[str, Path], dict[str, Any], DevPermitWorld],
    job_id: str,
    opt_out: Path,
) -> TrainingJob:
    sites, spec, permit = cohort
    return local_fhir_job(
        job_id=job_id,
        workdir=tmp_path / "work",
        site_sources=sites,
        spec=spec,
        permit_token=permit.permit_token,
        user_key=permit.user_key,
        trust_list=permit.trust_list,
        status_list=permit.status_list,
        site_opt_out={s: opt_out for s in sites},
        rounds=1,
        params=BoosterParams(max_depth=3, min_child_weight=5),
    )


def _run(job: TrainingJob) -> None:
    grid = InProcessGrid(
        client_app.make_client_app(client_app.SimulationSites(job.sites)), len(job.sites)
    )
    result = run_coordinator(grid, job, engine="inprocess")
    assert result.status == "completed", result.error_code


def _extracted(tmp_path: Path, site: str) -> list[dict[str, Any]]:
    import orjson

    lines = (tmp_path / "work" / "sites" / site / "audit.jsonl").read_bytes().splitlines()
    events = [orjson.loads(line) for line in lines]
    return [e for e in events if e["type"] == "data.extracted"]


def test_cache_key_changes_with_each_part(tmp_path: Path) -> None:
    data = tmp_path / "snap.ndjson"
    data.write_text("{}\n")
    registry = tmp_path / "optout.txt"
    registry.write_text("p1\n")
    key = cache_key("sha256:a", snapshot_version(data), registry_version(registry))
    registry.write_text("p1\np2\n")
    assert cache_key("sha256:a", snapshot_version(data), registry_version(registry)) != key
    data.write_text("{}\n{}\n")
    assert cache_key("sha256:b", snapshot_version(data), registry_version(registry)) != key
    assert registry_version(None) == "none"


def test_a_cache_hit_still_writes_data_extracted(
    tmp_path: Path, cohort: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    opt_out = tmp_path / "optout.txt"
    opt_out.write_text("")
    calls: list[int] = []
    real = features_module.extract_features

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(features_module, "extract_features", counting)
    _run(_job(tmp_path, cohort, "job-one", opt_out))
    assert len(calls) == 2  # one extraction per site
    client_app._FEATURES.clear()  # a new process (restarted executor): the disk cache serves
    _run(_job(tmp_path, cohort, "job-two", opt_out))
    assert len(calls) == 2  # nothing recomputed
    for site in cohort[0]:
        events = _extracted(tmp_path, site)
        assert [e["subject"]["job"] for e in events] == ["job-one", "job-two"]
        assert events[0]["details"] == events[1]["details"]


def test_a_patient_opting_out_between_jobs_is_excluded_from_the_next(
    tmp_path: Path, cohort: Any
) -> None:
    sites, spec, _permit = cohort
    first = next(iter(sites))
    keys = features_module.extract_features(FeatureSpec.from_dict(spec), sites[first]).patient_keys
    opt_out = tmp_path / "optout.txt"
    opt_out.write_text("")
    _run(_job(tmp_path, cohort, "job-before", opt_out))
    opt_out.write_text("\n".join(keys[:3]) + "\n")  # three patients of the first site opt out
    _run(_job(tmp_path, cohort, "job-after", opt_out))
    before, after = _extracted(tmp_path, first)
    assert before["details"]["excluded_opt_out"] == 0
    assert after["details"]["excluded_opt_out"] == 3
    assert after["details"]["rows"] == before["details"]["rows"] - 3
