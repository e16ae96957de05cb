"""The coordinator's reading of its own permit: bounds to plan a run within.

The coordinator does not decide access - every site's ``PermitGuard`` does,
with signatures, status list and replay checks. It reads the permit only to
refuse a job the sites would refuse anyway (fail early, spend no rounds) and to
bind each signed request to the permit's ``jti`` and ``permit_hash``.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.errors import JobConfigError
from federation.job import TrainingJob
from permits.model import Permit
from trust import parse_jws, sha256_tag


@dataclass(frozen=True)
class PermitPlan:
    jti: str
    permit_hash: str
    holders: tuple[str, ...]
    spec_hashes: dict[str, str]
    strategies: frozenset[str]
    operations: frozenset[str]
    outputs: frozenset[str]
    max_rounds: int
    max_depth: int
    min_rows_per_site: int
    min_rows_per_leaf: int


def read_permit(token: str) -> PermitPlan:
    """Parse (without verifying) the permit payload; JobConfigError if malformed."""
    try:
        parsed = parse_jws(token)
        permit = Permit.model_validate_json(parsed.payload)
    except Exception as exc:
        raise JobConfigError("the job's permit token is not a readable permit") from exc
    bounds = permit.processing.federated_xgboost
    return PermitPlan(
        jti=permit.jti,
        permit_hash=sha256_tag(parsed.payload),
        holders=tuple(g.holder for g in permit.data),
        spec_hashes={g.holder: g.feature_spec_hash for g in permit.data},
        strategies=frozenset(bounds.strategies),
        operations=frozenset(permit.processing.operations),
        outputs=frozenset(bounds.outputs),
        max_rounds=bounds.max_rounds,
        max_depth=bounds.max_depth,
        min_rows_per_site=bounds.min_rows_per_site,
        min_rows_per_leaf=bounds.min_rows_per_leaf,
    )


def check_job(job: TrainingJob, plan: PermitPlan) -> None:
    """Refuse a job that exceeds the permit; the sites would refuse it round by round."""
    if job.strategy not in plan.strategies:
        raise JobConfigError(f"strategy {job.strategy} is not allowed by the permit")
    if "train" not in plan.operations or "model" not in plan.outputs:
        raise JobConfigError("the permit does not allow training a model")
    if job.rounds * job.params.local_rounds > plan.max_rounds:
        raise JobConfigError(
            f"{job.rounds} x {job.params.local_rounds} boosting rounds exceed the permit's {plan.max_rounds}"
        )
    if job.params.max_depth > plan.max_depth:
        raise JobConfigError(
            f"max_depth {job.params.max_depth} exceeds the permit's {plan.max_depth}"
        )
    if job.params.min_child_weight < plan.min_rows_per_leaf:
        raise JobConfigError(
            "min_child_weight is below the permit's min_rows_per_leaf disclosure floor"
        )
    for site in job.sites:
        if site.site_id not in plan.holders:
            raise JobConfigError(f"site {site.site_id} is not a data holder of the permit")
    wrong = [h for h, s in plan.spec_hashes.items() if s != job.spec_hash]
    if wrong:
        raise JobConfigError("the job's feature spec hash differs from the permit's")
    if job.min_sites > len(plan.holders):
        raise JobConfigError("min_sites exceeds the number of data holders in the permit")
