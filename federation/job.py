"""What a training run is asked to do (:class:`TrainingJob`) and what it did
(:class:`TrainingResult`). Both round-trip through JSON because in deployment
the job reaches the ServerApp process as a file named in the run config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from federation.errors import JobConfigError
from federation.factory import FactoryRef

ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
Strategy = Literal["bagging", "cyclic"]


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not ID.match(value):
        raise JobConfigError(f"{what} must match {ID.pattern}")
    return value


@dataclass(frozen=True)
class SiteConfig:
    """How one data holder builds its data source, permit check and audit sink.

    In deployment this lives at the site (the SuperNode's ``site-config`` file);
    in simulation the job lists one per virtual SuperNode (partition id = index).
    """

    site_id: str
    data: FactoryRef
    authorizer: FactoryRef
    audit: FactoryRef

    def __post_init__(self) -> None:
        _check_id(self.site_id, "site_id")

    def to_dict(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "data": self.data.to_dict(),
            "authorizer": self.authorizer.to_dict(),
            "audit": self.audit.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SiteConfig:
        try:
            return cls(
                site_id=data["site_id"],
                data=FactoryRef.from_dict(data["data"]),
                authorizer=FactoryRef.from_dict(data["authorizer"]),
                audit=FactoryRef.from_dict(data["audit"]),
            )
        except (KeyError, TypeError) as exc:
            raise JobConfigError("site config needs site_id, data, authorizer, audit") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> SiteConfig:
        try:
            return cls.from_dict(orjson.loads(Path(path).read_bytes()))
        except (OSError, orjson.JSONDecodeError) as exc:
            raise JobConfigError(f"cannot read site config {Path(path).name}") from exc


@dataclass(frozen=True)
class BoosterParams:
    """XGBoost settings; permit bounds are applied on top at every site."""

    objective: Literal["binary:logistic", "multi:softprob"] = "binary:logistic"
    num_class: int = 0
    eta: float = 0.3
    max_depth: int = 4
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    max_bin: int = 256
    local_rounds: int = 1
    base_score: tuple[float, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.objective == "multi:softprob") != (self.num_class >= 3):
            raise JobConfigError("multi:softprob needs num_class >= 3; binary needs num_class 0")
        if not 0 < self.eta <= 1 or self.max_depth < 1 or self.local_rounds < 1:
            raise JobConfigError("eta in (0,1], max_depth >= 1 and local_rounds >= 1 required")
        if self.base_score and len(self.base_score) != self.groups:
            raise JobConfigError("base_score needs one value per output group")

    @property
    def groups(self) -> int:
        return max(1, self.num_class)

    def fixed_base_score(self) -> tuple[float, ...]:
        """The intercept every site must use: set once, by the coordinator.

        XGBoost >= 2 estimates ``base_score`` from each site's own labels;
        sites would then disagree and the merged model would take whichever
        answered first. A fixed value makes the result order-independent.
        """
        if self.base_score:
            return self.base_score
        return (0.5,) * self.groups


@dataclass(frozen=True)
class TrainingJob:
    """One permit-bound federated training run."""

    job_id: str
    permit_token: str
    request_signer: FactoryRef
    spec: Mapping[str, Any]
    spec_hash: str
    feature_names: tuple[str, ...]
    output_dir: str
    audit: FactoryRef
    sites: tuple[SiteConfig, ...] = ()
    strategy: Strategy = "bagging"
    rounds: int = 3
    min_sites: int = 2
    params: BoosterParams = field(default_factory=BoosterParams)
    eval_fraction: float = 0.2
    round_timeout: float = 600.0
    expected_sites: int = 0
    #: Key of the patient-level held-out split (:mod:`federation.holdout`); empty =
    #: the job id. Jobs that must be scored on the same patients share one.
    split_key: str = ""

    def __post_init__(self) -> None:
        _check_id(self.job_id, "job_id")
        if self.split_key:
            _check_id(self.split_key, "split_key")
        if not self.feature_names or len(set(self.feature_names)) != len(self.feature_names):
            raise JobConfigError("feature_names must be non-empty and distinct")
        if self.strategy not in ("bagging", "cyclic"):
            raise JobConfigError("strategy must be 'bagging' or 'cyclic'")
        if self.rounds < 1 or self.min_sites < 1:
            raise JobConfigError("rounds and min_sites must be >= 1")
        if not 0.0 <= self.eval_fraction < 0.9:
            raise JobConfigError("eval_fraction must be in [0, 0.9)")
        ids = [s.site_id for s in self.sites]
        if len(set(ids)) != len(ids):
            raise JobConfigError("a site is listed twice")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["request_signer"] = self.request_signer.to_dict()
        data["audit"] = self.audit.to_dict()
        data["sites"] = [s.to_dict() for s in self.sites]
        data["spec"] = dict(self.spec)
        data["params"] = asdict(self.params)
        data["feature_names"] = list(self.feature_names)
        return data

    def sites_expected(self, holders: int) -> int:
        """Sites to wait for before round 1: explicit, else the configured sites, else all holders."""
        return self.expected_sites or len(self.sites) or holders

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingJob:
        try:
            params = dict(data.get("params", {}))
            params["base_score"] = tuple(params.get("base_score", ()))
            return cls(
                job_id=data["job_id"],
                permit_token=data["permit_token"],
                request_signer=FactoryRef.from_dict(data["request_signer"]),
                spec=dict(data["spec"]),
                spec_hash=data["spec_hash"],
                feature_names=tuple(data["feature_names"]),
                output_dir=data["output_dir"],
                audit=FactoryRef.from_dict(data["audit"]),
                sites=tuple(SiteConfig.from_dict(s) for s in data.get("sites", ())),
                strategy=data.get("strategy", "bagging"),
                rounds=int(data.get("rounds", 3)),
                min_sites=int(data.get("min_sites", 2)),
                params=BoosterParams(**params),
                eval_fraction=float(data.get("eval_fraction", 0.2)),
                round_timeout=float(data.get("round_timeout", 600.0)),
                expected_sites=int(data.get("expected_sites", 0)),
                split_key=str(data.get("split_key", "")),
            )
        except (KeyError, TypeError) as exc:
            raise JobConfigError(f"training job is incomplete: {exc}") from exc

    def write(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_bytes(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2))
        return target

    @classmethod
    def from_file(cls, path: str | Path) -> TrainingJob:
        try:
            return cls.from_dict(orjson.loads(Path(path).read_bytes()))
        except (OSError, orjson.JSONDecodeError) as exc:
            raise JobConfigError(f"cannot read training job {Path(path).name}") from exc


@dataclass
class RoundReport:
    """What one round did, in counts and hashes only."""

    round: int
    model_hash: str
    sites: list[str]
    failed: dict[str, str]
    rows: int
    trees: int
    bytes_sent: dict[str, int]
    seconds: float
    #: The round's message exchanges as the coordinator saw them (``started``,
    #: ``pushed``, ``received``; ``time.time()``), when its grid records them.
    exchanges: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainingResult:
    """The outcome of :func:`federation.run.train`."""

    job_id: str
    engine: str
    strategy: str
    status: Literal["completed", "failed"]
    rounds: list[RoundReport] = field(default_factory=list)
    contributing_sites: list[str] = field(default_factory=list)
    failed_sites: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    model_hash: str | None = None
    model_ubj: str | None = None
    model_json: str | None = None
    model_card: str | None = None
    checkpoint: dict[str, object] | None = None
    error_code: str | None = None
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingResult:
        values = dict(data)
        values["rounds"] = [RoundReport(**r) for r in values.get("rounds", [])]
        return cls(**values)
