"""One evaluation protocol: a patient-level keyed split that training never sees.

The demo and the bench score every model on held-out patients; these tests run
the sites' real ClientApp (in-process grid, real permit guard, real FHIR
extraction) and check that no held-out patient is ever in a site's training rows.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from federation import client_app
from federation import site as site_ops
from federation.adapters import spec_hash_of
from federation.holdout import held_out
from federation.job import BoosterParams, TrainingJob
from federation.jobs import local_fhir_job
from federation.reference import reference_site
from federation.server_app import run_coordinator
from federation.testing.devpermit import build_permit_world
from federation.testing.inprocess import InProcessGrid
from fhir_adapters.testing.synthetic import CohortConfig, synthetic_spec_document, write_ndjson
from tests.federation.conftest import World

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_process_cache() -> Iterator[None]:
    client_app._FEATURES.clear()
    client_app._EXTRACTED.clear()
    yield
    client_app._FEATURES.clear()


def _run(job: TrainingJob) -> Any:
    grid = InProcessGrid(
        client_app.make_client_app(client_app.SimulationSites(job.sites)), len(job.sites)
    )
    return run_coordinator(grid, job, engine="inprocess")


def test_split_is_per_patient_keyed_and_deterministic() -> None:
    keys = [f"p{i}" for i in range(4000)] * 2  # every patient has two rows
    mask = held_out(keys, "job-a", 0.2)
    assert np.array_equal(mask[:4000], mask[4000:])  # a patient's rows share a side
    assert 0.17 < mask[:4000].mean() < 0.23
    assert np.array_equal(mask, held_out(keys, "job-a", 0.2))
    assert not np.array_equal(mask, held_out(keys, "job-b", 0.2))
    assert not held_out(keys, "job-a", 0.0).any()


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "federated_bench", ROOT / "bench" / "federated_bench.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("who", ["demo", "bench"])
def test_held_out_patients_never_reach_a_sites_training_rows(
    who: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if who == "demo":
        from gateway import demo

        job_id, split_key, fraction = demo.JOB_ID, "", demo.EVAL_FRACTION
    else:
        bench = _bench_module()
        job_id, split_key, fraction = "bench-bagging", bench.SPLIT_KEY, bench.EVAL_FRACTION
    folders = write_ndjson(CohortConfig(n_patients=900, n_sites=3, seed=11), tmp_path / "fhir")
    sites = {f.name: f for f in folders}
    spec = synthetic_spec_document()
    spec_hash = spec_hash_of(spec)
    permit = build_permit_world(tmp_path / "permit", holders=list(sites), spec_hash=spec_hash)
    trained: dict[str, set[str]] = {s: set() for s in sites}
    real_train = site_ops.train_round

    def spying(data: Any, rows: np.ndarray, *args: Any) -> Any:
        site = next(s for s in sites if len(data.patient_keys) and s in _site_of(data, sites))
        trained[site].update(data.patient_keys[i] for i in rows)
        return real_train(data, rows, *args)

    monkeypatch.setattr(site_ops, "train_round", spying)
    job = local_fhir_job(
        job_id=job_id,
        workdir=tmp_path / "work",
        site_sources=sites,
        spec=spec,
        permit_token=permit.permit_token,
        user_key=permit.user_key,
        trust_list=permit.trust_list,
        status_list=permit.status_list,
        rounds=2,
        params=BoosterParams(max_depth=3, min_child_weight=5),
        eval_fraction=fraction,
    )
    if split_key:
        from dataclasses import replace

        job = replace(job, split_key=split_key)
    result = _run(job)
    assert result.status == "completed", result.error_code
    card = orjson.loads(Path(result.model_card).read_bytes())
    assert card["evaluation"]["on"] == "held_out_patients"
    for site, folder in sites.items():
        ref = reference_site(
            folder, spec, spec_hash, split_key=split_key or job_id, eval_fraction=fraction
        )
        held = ref.held_out_keys()
        assert held and trained[site]
        assert not held & trained[site]
        assert held | trained[site] == set(ref.data.patient_keys)
        assert card["evaluation"]["rows_per_site"][site] == len(held)


def _site_of(data: Any, sites: dict[str, Path]) -> set[str]:
    """Which site a dataset belongs to: the synthetic generator prefixes keys per site."""
    owners = set()
    for site, folder in sites.items():
        patient_file = next(folder.glob("Patient*"))
        if data.patient_keys[0] in patient_file.read_text():
            owners.add(site)
    return owners


def test_training_set_numbers_are_labelled_as_such(world: World) -> None:
    result = _run(world.job(eval_fraction=0.0))
    assert result.status == "completed", result.error_code
    card = orjson.loads(Path(result.model_card).read_bytes())
    assert card["evaluation"]["on"] == "training_set"
    assert "metrics" not in card and set(card["training_set_metrics"]) >= {"auc"}
    assert card["evaluation"]["eval_fraction"] == 0.0
