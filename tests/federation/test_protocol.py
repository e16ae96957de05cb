"""Coordinator <-> site protocol, exercised in-process (fast, deterministic).

The same apps run on Flower's engines in test_simulation.py and test_deployment_e2e.py.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import orjson
import pytest
import xgboost as xgb
from flwr.app import Message

from federation import trees, wire
from federation.client_app import SimulationSites, make_client_app
from federation.factory import FactoryRef
from federation.job import BoosterParams, TrainingJob
from federation.server_app import run_coordinator
from federation.testing.inprocess import InProcessGrid
from tests.federation.conftest import SITES, World, WorldFactory


def _run(job: TrainingJob) -> tuple[InProcessGrid, object]:
    grid = InProcessGrid(make_client_app(SimulationSites(job.sites)), len(job.sites))
    return grid, run_coordinator(grid, job, engine="inprocess")


def _all_bytes(msg: Message) -> bytes:
    """Everything a message carries, as bytes, for a blunt substring scan."""
    parts: list[bytes] = []
    for record in msg.content.array_records.values():
        parts.extend(arr.numpy().tobytes() for arr in record.values())
    for record in msg.content.config_records.values():
        parts.append(orjson.dumps({k: v for k, v in record.items() if not isinstance(v, bytes)}))
    for record in msg.content.metric_records.values():
        parts.append(orjson.dumps(dict(record)))
    return b"".join(parts)


def test_completed_run_releases_model_with_card(world: World) -> None:
    _grid, result = _run(world.job())
    assert result.status == "completed", result.error_code
    assert result.contributing_sites == list(SITES)
    assert [r.round for r in result.rounds] == [1, 2, 3]
    card = orjson.loads(Path(result.model_card).read_bytes())
    assert card["permit"] == world.permit.permit_jti
    assert card["spec_hash"] == world.spec_hash
    assert card["sites_contributed"] == list(SITES)
    assert card["rounds"] == 3 and card["model_hash"] == result.model_hash
    assert set(result.metrics) == {"auc", "logloss", "accuracy"}
    booster = xgb.Booster()
    booster.load_model(result.model_ubj)
    again = xgb.Booster()
    again.load_model(result.model_json)
    X, _y = world.split.test
    dm = xgb.DMatrix(X, feature_names=list(world.split.feature_names))
    assert np.allclose(booster.predict(dm), again.predict(dm))
    types = [e["type"] for e in world.events("coordinator")]
    assert types[0] == "training.started" and types.count("training.round") == 3
    assert types[-1] == "model.released"
    for site in SITES:
        site_types = [e["type"] for e in world.events(site)]
        assert site_types.count("data.extracted") == 1
        assert site_types.count("training.round") == 3
        assert "access.allowed" in site_types
        extracted = next(e for e in world.events(site) if e["type"] == "data.extracted")
        assert extracted["details"]["spec_hash"] == world.spec_hash
        assert extracted["subject"]["permit"] == world.permit.permit_jti


def test_no_node_statistics_in_any_outgoing_message(world: World) -> None:
    grid, result = _run(world.job())
    assert result.status == "completed"
    assert len(grid.replies) == 3 * 3 + 3  # 3 train rounds and one evaluation, 3 sites
    for msg in [*grid.replies, *grid.sent]:
        blob = _all_bytes(msg)
        for name in (*trees.NODE_STATISTICS, "parents"):
            assert name.encode() not in blob
        for key in msg.content.array_records:
            pack = trees.decode_pack(wire.pack_bytes(msg.content, key))
            for tree in pack["trees"]:
                assert set(tree) == set(trees.TREE_FIELDS)
    # and only the new trees go up: one per site per round for a binary model
    for reply in grid.replies:
        if wire.TREES in reply.content.array_records:
            assert len(trees.decode_pack(wire.pack_bytes(reply.content, wire.TREES))["trees"]) == 1


def test_denied_permit_reads_no_data(make_world: WorldFactory) -> None:
    world = make_world(revoked=True)
    _grid, result = _run(world.job())
    assert result.status == "failed" and result.error_code == "FED_TOO_FEW_SITES"
    for site in SITES:
        assert not (world.root / site / "data-read").exists()
        denied = [e for e in world.events(site) if e["type"] == "access.denied"]
        assert denied and denied[0]["details"]["reason"] == "permit_revoked"
        assert not [e for e in world.events(site) if e["type"] == "data.extracted"]
    failed = [e for e in world.events("coordinator") if e["type"] == "training.site_failed"]
    assert {e["subject"]["site"] for e in failed} == set(SITES)
    assert {e["details"]["reason"] for e in failed} == {"permit_revoked"}


def test_forged_request_is_denied_before_data(world: World, tmp_path: Path) -> None:
    from trust import generate_jwk as generate_key

    other = tmp_path / "mallory.jwk"
    other.write_text(generate_key().export_private())
    signer = FactoryRef(
        "federation.adapters:request_signer",
        {"key_path": str(other), "permit_token": world.permit.permit_token},
    )
    _grid, result = _run(world.job(request_signer=signer))
    assert result.status == "failed"
    for site in SITES:
        assert not (world.root / site / "data-read").exists()
        reasons = {
            e["details"]["reason"] for e in world.events(site) if e["type"] == "access.denied"
        }
        assert reasons == {"requester_not_authorised"}


def test_job_beyond_permit_bounds_is_refused_before_any_round(make_world: WorldFactory) -> None:
    world = make_world(max_rounds=2)
    grid, result = _run(world.job(rounds=3))
    assert result.status == "failed" and result.error_code == "FED_JOB_CONFIG"
    assert grid.sent == []
    world = make_world(max_depth=2)
    grid, result = _run(world.job())  # job asks for depth 3
    assert result.error_code == "FED_JOB_CONFIG" and grid.sent == []


def test_min_child_weight_raised_to_leaf_floor_and_leaves_respect_it(
    make_world: WorldFactory,
) -> None:
    world = make_world(min_rows_per_leaf=40)
    job = world.job(params=BoosterParams(max_depth=6, eta=0.3, min_child_weight=1))
    _grid, result = _run(job)
    assert result.status == "completed"
    booster = xgb.Booster()
    booster.load_model(result.model_ubj)
    # Every tree was grown at one site on (1 - eval_fraction) of its rows, each leaf
    # holding >= 40 of them. So for every tree some site's rows reach every leaf the
    # pooled rows reach, with at least 40 rows in each.
    names = list(world.split.feature_names)
    per_site = [
        booster.predict(xgb.DMatrix(X, feature_names=names), pred_leaf=True)
        for X, _ in world.split.sites.values()
    ]
    pooled = np.concatenate(per_site)
    assert pooled.shape[1] == len(result.rounds) * len(SITES)
    for tree in range(pooled.shape[1]):
        reached = set(np.unique(pooled[:, tree]).tolist())
        grown_here = [
            leaves[:, tree]
            for leaves in per_site
            if set(np.unique(leaves[:, tree]).tolist()) == reached
            and np.unique(leaves[:, tree], return_counts=True)[1].min() >= 40
        ]
        assert grown_here, f"tree {tree} has a leaf below the floor at every site"


def test_site_below_min_rows_is_refused(make_world: WorldFactory) -> None:
    world = make_world(min_rows_per_site=100_000)
    _grid, result = _run(world.job())
    assert result.status == "failed"
    for site in SITES:
        reasons = {
            e["details"]["reason"] for e in world.events(site) if e["type"] == "access.denied"
        }
        assert "too_few_rows" in reasons or "min_rows_per_site" in reasons


def test_metrics_withheld_below_disclosure_floor(make_world: WorldFactory) -> None:
    world = make_world(min_rows_per_leaf=5, outputs=("model",))
    _grid, result = _run(world.job(rounds=1))
    assert result.status == "completed"
    assert result.metrics == {}  # evaluation not permitted: no metric leaves a site


def test_multiclass_federated_run_keeps_all_class_trees(make_world: WorldFactory) -> None:
    world = make_world(n_classes=3)
    params = BoosterParams(objective="multi:softprob", num_class=3, max_depth=3, min_child_weight=5)
    _grid, result = _run(world.job(params=params, rounds=2))
    assert result.status == "completed", result.error_code
    assert [r.trees for r in result.rounds] == [9, 9]  # 3 sites x 3 classes per round
    booster = xgb.Booster()
    booster.load_model(result.model_ubj)
    assert booster.num_boosted_rounds() == 6  # one iteration per site update
    doc = orjson.loads(booster.save_raw("json"))
    assert len(doc["learner"]["gradient_booster"]["model"]["trees"]) == 18


def test_site_failing_mid_run_is_recorded_and_run_completes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EHDS_TEST_INPROCESS", "1")
    marker = world.root / "kill-site-c"
    base = world.site("site-c")
    dying = FactoryRef(
        "tests.federation.helpers:dying_guard",
        {**base.authorizer.kwargs, "kill_marker": str(marker)},
    )
    sites = [world.site("site-a"), world.site("site-b"), world.site("site-c", authorizer=dying)]
    job = world.job(sites=sites)
    grid = InProcessGrid(make_client_app(SimulationSites(job.sites)), 3)
    result = run_coordinator(grid, job, engine="inprocess", progress=lambda r: marker.touch())
    assert result.status == "completed"
    assert result.failed_sites == {"site-c": "internal_error"}
    assert result.rounds[0].sites == list(SITES)
    assert result.rounds[1].sites == ["site-a", "site-b"]
    card = orjson.loads(Path(result.model_card).read_bytes())
    assert card["sites_failed"] == {"site-c": "internal_error"}
    assert card["sites_contributed"] == list(SITES)
    failed = [e for e in world.events("coordinator") if e["type"] == "training.site_failed"]
    assert [(e["subject"]["site"], e["details"]["round"]) for e in failed] == [("site-c", 2)]


def test_release_cites_the_signed_checkpoint_covering_the_run(world: World) -> None:
    from audit_chain import EventSigner
    from audit_chain.log import AuditLog

    key = world.root / "coordinator-signer.json"
    key.write_bytes(orjson.dumps(EventSigner.generate("research-org").to_json()))
    db = world.root / "coordinator-audit.db"
    audit = FactoryRef(
        "federation.adapters:signed_log_sink", {"db_url": str(db), "key_path": str(key)}
    )
    _grid, result = _run(world.job(audit=audit, rounds=2))
    assert result.status == "completed", result.error_code
    card = orjson.loads(Path(result.model_card).read_bytes())
    checkpoint = card["audit_checkpoint"]
    log = AuditLog.open(str(db))
    try:
        entries = list(log.entries())
        types = [e.type for e in entries]
        # training.started, two rounds, then the release that names the checkpoint
        assert types == ["training.started", "training.round", "training.round", "model.released"]
        assert checkpoint["size"] == 3 and checkpoint["root"] == "sha256:" + log.root(3).hex()
        payload = entries[-1].token.split(".")[1]
        released = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert released["details"]["checkpoint_size"] == 3
        assert released["details"]["checkpoint_root"] == checkpoint["root"]
        assert released["details"]["model_hash"] == result.model_hash
        assert released["subject"]["permit"] == world.permit.permit_jti
    finally:
        log.close()


def test_cyclic_skips_a_failed_site_and_continues(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EHDS_TEST_INPROCESS", "1")
    marker = world.root / "kill-site-c"
    base = world.site("site-c")
    dying = FactoryRef(
        "tests.federation.helpers:dying_guard",
        {**base.authorizer.kwargs, "kill_marker": str(marker)},
    )
    sites = [world.site("site-a"), world.site("site-b"), world.site("site-c", authorizer=dying)]
    job = world.job(sites=sites, strategy="cyclic", rounds=5)
    grid = InProcessGrid(make_client_app(SimulationSites(job.sites)), 3)

    def progress(report: object) -> None:
        if len(list(world.root.glob("round-*"))) >= 1:
            marker.touch()
        (world.root / f"round-{id(report)}").touch()

    result = run_coordinator(grid, job, engine="inprocess", progress=progress)
    assert result.status == "completed", result.error_code
    assert result.failed_sites == {"site-c": "internal_error"}
    per_round = [r.sites for r in result.rounds]
    assert per_round[0] == ["site-a"] and per_round[1] == ["site-b"] and per_round[2] == []
    assert all(len(s) == 1 for s in per_round[3:])
    assert result.contributing_sites == ["site-a", "site-b"]


def test_local_fhir_job_trains_on_the_synthetic_fhir_cohort(tmp_path: Path) -> None:
    """End to end from FHIR NDJSON: spec hash, extraction at each site, permit, release."""
    from federation.adapters import spec_hash_of
    from federation.jobs import local_fhir_job
    from federation.testing.devpermit import build_permit_world
    from fhir_adapters.testing.synthetic import CohortConfig, synthetic_spec_document, write_ndjson

    folders = write_ndjson(CohortConfig(n_patients=900, n_sites=3, seed=5), tmp_path / "fhir")
    spec = synthetic_spec_document()
    sites = {f.name: f for f in folders}
    permit = build_permit_world(
        tmp_path / "permit", holders=list(sites), spec_hash=spec_hash_of(spec)
    )
    job = local_fhir_job(
        job_id="fhir-job",
        workdir=tmp_path / "work",
        site_sources=sites,
        spec=spec,
        permit_token=permit.permit_token,
        user_key=permit.user_key,
        trust_list=permit.trust_list,
        status_list=permit.status_list,
        rounds=2,
        params=BoosterParams(max_depth=3, min_child_weight=5),
    )
    _grid, result = _run(job)
    assert result.status == "completed", result.error_code
    assert result.contributing_sites == sorted(sites)
    for site in sites:
        lines = (tmp_path / "work" / "sites" / site / "audit.jsonl").read_bytes().splitlines()
        extracted = [orjson.loads(x) for x in lines if b"data.extracted" in x]
        assert extracted and extracted[0]["details"]["spec_hash"] == job.spec_hash
        assert extracted[0]["details"]["features"] == len(job.feature_names)
