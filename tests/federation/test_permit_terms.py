"""Every permit term is enforced at the ClientApp, where the site reads its data.

The coordinator here is hostile: it sends the site messages the permit does
not allow, correctly signed by the data user (so only the site's own checks
stand between the request and the data). One test per term: time_range,
datasets, data holders, operations, model bounds, rounds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Message, RecordDict

from federation import trees, wire
from federation.adapters import request_signer
from federation.client_app import SimulationSites, make_client_app
from federation.factory import FactoryRef
from federation.job import BoosterParams
from federation.testing.inprocess import InProcessGrid
from permits import load_jwk, thumbprint
from tests.federation.conftest import SITES, World, WorldFactory


def _send(
    world: World,
    site_index: int = 0,
    *,
    operation: str = "train",
    round: int = 1,
    params: BoosterParams | None = None,
    strategy: str = "bagging",
    sites: tuple[Any, ...] | None = None,
) -> str | None:
    """One message to one site's ClientApp; returns the reply's error code (None = served)."""
    configs = sites if sites is not None else tuple(world.site(s) for s in SITES)
    grid = InProcessGrid(make_client_app(SimulationSites(configs)), len(configs))
    params = params or BoosterParams(max_depth=3, min_child_weight=5)
    holder = configs[site_index].site_id
    signer = request_signer(
        key_path=str(world.permit.user_key), permit_token=world.permit.permit_token
    )
    signed = signer.sign(
        holder=holder,
        operation=operation,
        params=wire.access_params(operation, params, world.spec_hash, strategy),
    )
    initial = trees.empty_pack(
        objective=params.objective,
        num_feature=len(world.split.feature_names),
        num_class=params.num_class,
        base_score=params.fixed_base_score(),
        feature_names=world.split.feature_names,
    )
    content = RecordDict(
        {
            wire.GLOBAL: wire.pack_record(trees.encode_pack(initial)),
            wire.JOB: wire.job_config(
                job_id="job-hostile",
                round=round,
                operation=operation,
                permit_token=world.permit.permit_token,
                requests={holder: signed},
                spec=world.spec,
                spec_hash=world.spec_hash,
                params=params,
                eval_fraction=0.0,
                strategy=strategy,
            ),
        }
    )
    msg = Message(content=content, message_type=operation, dst_node_id=grid.node_ids[site_index])
    (reply,) = grid.send_and_receive([msg])
    error = reply.content.config_records[wire.SITE].get("error")
    return error if isinstance(error, str) else None


def _denials(world: World, site: str) -> list[dict[str, Any]]:
    return [e for e in world.events(site) if e["type"] == "access.denied"]


def _read(world: World, site: str) -> bool:
    return (world.root / site / "data-read").exists()


def test_time_range_rows_dated_outside_are_not_used_and_counted(world: World) -> None:
    path = world.data["site-a"]
    with np.load(path) as data:
        X, y, names = data["X"], data["y"], data["feature_names"]
    # the permit grants 2015-01-01..2026-12-31: every third row is from 2027
    dates = np.where(np.arange(len(X)) % 3 == 0, "2027-02-01", "2020-06-30")
    np.savez(path, X=X, y=y, feature_names=names, dates=dates)
    outside = int((dates > "2026-12-31").sum())
    assert _send(world) is None
    extracted = [e for e in world.events("site-a") if e["type"] == "data.extracted"][-1]
    assert extracted["details"]["excluded_time_range"] == outside
    assert extracted["details"]["rows"] == len(X) - outside
    trained = [e for e in world.events("site-a") if e["type"] == "training.round"][-1]
    assert trained["details"]["rows"] == len(X) - outside  # only in-range rows trained


def test_dataset_not_named_in_the_permit_is_refused_before_reading(world: World) -> None:
    source = FactoryRef(
        "tests.federation.helpers:recording_source",
        {
            "path": str(world.data["site-a"]),
            "read_marker": str(world.root / "site-a" / "data-read"),
            "dataset": "claims-2019",  # the permit names "ehr"
        },
    )
    sites = (world.site("site-a", data=source), world.site("site-b"))
    assert _send(world, sites=sites) == "dataset_not_permitted"
    assert not _read(world, "site-a")
    denied = _denials(world, "site-a")[-1]
    assert denied["details"]["reason"] == "dataset_not_permitted"
    assert denied["details"]["requester"] == thumbprint(load_jwk(world.permit.user_key))
    # the same source declaring the permitted dataset is served
    ok = replace(source, kwargs={**source.kwargs, "dataset": "ehr"})
    assert _send(world, sites=(world.site("site-a", data=ok),)) is None


def test_data_holder_not_named_is_refused(make_world: WorldFactory) -> None:
    world = make_world(holders=("site-a", "site-b"))
    assert _send(world, site_index=2) == "holder_not_named"
    assert not _read(world, "site-c")
    assert _denials(world, "site-c")[-1]["details"]["reason"] == "holder_not_named"


def test_operation_not_in_the_permit_is_refused(make_world: WorldFactory) -> None:
    world = make_world(operations=("train",))
    assert _send(world, operation="evaluate") == "operation_not_allowed"
    assert not _read(world, "site-a")
    assert _denials(world, "site-a")[-1]["details"]["reason"] == "operation_not_allowed"


def test_model_bounds_beyond_the_permit_are_refused(make_world: WorldFactory) -> None:
    world = make_world(max_depth=3, strategies=("bagging",), min_rows_per_leaf=8)
    cases = [
        ({"params": BoosterParams(max_depth=6, min_child_weight=8)}, "parameter_out_of_bounds"),
        ({"params": BoosterParams(max_depth=3, min_child_weight=5)}, "parameter_out_of_bounds"),
        (
            {"params": BoosterParams(max_depth=3, min_child_weight=8), "strategy": "cyclic"},
            "strategy_not_allowed",
        ),
    ]
    for kwargs, reason in cases:
        assert _send(world, **kwargs) == reason
        assert _denials(world, "site-a")[-1]["details"]["reason"] == reason
    assert not _read(world, "site-a")
    assert _send(world, params=BoosterParams(max_depth=3, min_child_weight=8)) is None


def test_rounds_beyond_the_permit_are_refused(make_world: WorldFactory) -> None:
    world = make_world(max_rounds=2)
    assert _send(world, round=1) is None
    assert _send(world, round=2) is None
    assert _send(world, round=3) == "rounds_exceeded"  # the site's own ledger, not the round no.
    assert _denials(world, "site-a")[-1]["details"]["reason"] == "rounds_exceeded"


def test_status_list_rollback_after_restart_is_refused(world: World, tmp_path: Path) -> None:
    """A site restarted with an older status list than it accepted before refuses."""
    from permits import TrustList
    from permits.statuslist import build_status_list, parse_status_list, sign_status_list

    current = world.permit.status_list.read_text()
    trust = TrustList.from_file(world.permit.trust_list)
    status = parse_status_list(current, trust)
    assert _send(world) is None  # version 1 accepted and persisted in the guard state
    hdab_key = load_jwk(world.permit.root / "hdab_key.jwk")
    newer = build_status_list(status.iss, 2, status.iat, status.entries)
    world.permit.status_list.write_text(sign_status_list(newer, hdab_key))
    assert _send(world) is None
    world.permit.status_list.write_text(current)  # the "restart" reads the older file
    assert _send(world) == "status_list_rollback"
    assert _denials(world, "site-a")[-1]["details"]["reason"] == "status_list_rollback"


def test_fhir_source_reads_only_records_inside_the_time_range(tmp_path: Path) -> None:
    """From FHIR NDJSON: records after the permit's end are not read, and counted."""
    from federation.adapters import FhirSource, spec_hash_of
    from fhir_adapters.testing.synthetic import CohortConfig, synthetic_spec_document, write_ndjson

    (folder,) = write_ndjson(CohortConfig(n_patients=300, n_sites=1, seed=7), tmp_path / "fhir")
    spec = synthetic_spec_document()
    source = FhirSource(str(folder))
    full = source.load(spec, spec_hash=spec_hash_of(spec), time_range=("2015-01-01", "2026-12-31"))
    cut = source.load(spec, spec_hash=spec_hash_of(spec), time_range=("2015-01-01", "2024-06-30"))
    assert full.excluded_time_range == 0
    assert cut.excluded_time_range > 0
    # diagnoses dated after the permit's end no longer label anyone positive
    assert float(np.nansum(cut.y)) < float(np.nansum(full.y))
