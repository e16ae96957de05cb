"""A small permit world with three non-IID sites, shared by the federation tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

import trust
from federation.factory import FactoryRef
from federation.job import BoosterParams, SiteConfig, TrainingJob
from federation.testing.devpermit import DevPermitWorld, build_permit_world
from federation.testing.synthetic import SyntheticSplit, risk_cohort, write_site_arrays

SITES = ("site-a", "site-b", "site-c")


@dataclass
class World:
    root: Path
    split: SyntheticSplit
    data: dict[str, Path]
    spec: dict[str, Any]
    spec_hash: str
    permit: DevPermitWorld

    def site(self, site_id: str, **overrides: FactoryRef) -> SiteConfig:
        base = self.root / site_id
        cfg = SiteConfig(
            site_id=site_id,
            data=FactoryRef(
                "tests.federation.helpers:recording_source",
                {"path": str(self.data[site_id]), "read_marker": str(base / "data-read")},
            ),
            authorizer=FactoryRef(
                "federation.adapters:permit_guard",
                {
                    "holder": site_id,
                    "trust_list": str(self.permit.trust_list),
                    "status_list": str(self.permit.status_list),
                    "state_db": str(base / "guard.db"),
                },
            ),
            audit=FactoryRef("federation.adapters:jsonl_sink", {"path": str(base / "audit.jsonl")}),
        )
        return replace(cfg, **overrides)

    def job(self, sites: Sequence[SiteConfig] | None = None, **overrides: Any) -> TrainingJob:
        job = TrainingJob(
            job_id="job-test",
            permit_token=self.permit.permit_token,
            request_signer=FactoryRef(
                "federation.adapters:request_signer",
                {"key_path": str(self.permit.user_key), "permit_token": self.permit.permit_token},
            ),
            spec=self.spec,
            spec_hash=self.spec_hash,
            feature_names=self.split.feature_names,
            output_dir=str(self.root / "out"),
            audit=FactoryRef(
                "federation.adapters:jsonl_sink", {"path": str(self.root / "coordinator.jsonl")}
            ),
            sites=tuple(sites) if sites is not None else tuple(self.site(s) for s in SITES),
            rounds=3,
            params=BoosterParams(max_depth=3, eta=0.3, min_child_weight=5),
        )
        return replace(job, **overrides)

    def events(self, who: str) -> list[dict[str, Any]]:
        path = (
            self.root / "coordinator.jsonl"
            if who == "coordinator"
            else self.root / who / "audit.jsonl"
        )
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world(tmp_path: Path) -> WorldFactory:
    def build(n_classes: int = 2, patients: int = 1500, **permit_kwargs: Any) -> World:
        split = risk_cohort(SITES, patients=patients, n_features=6, n_classes=n_classes, seed=3)
        data = write_site_arrays(split, tmp_path / "data")
        spec = {"name": "test-spec", "features": list(split.feature_names)}
        spec_hash = trust.spec_hash(spec)
        holders = permit_kwargs.pop("holders", SITES)
        permit = build_permit_world(
            tmp_path / "permit", holders=holders, spec_hash=spec_hash, **permit_kwargs
        )
        return World(tmp_path, split, data, spec, spec_hash, permit)

    return build


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    return make_world()
