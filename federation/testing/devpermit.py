"""A self-contained permit world for demos, benchmarks and tests.

Creates an HDAB key and trust list, a data user's key, a signed permit naming
the given data holders with the given bounds, and the HDAB's signed status
list - all as files, the way a site would receive them. Not for production:
real permits come from an HDAB (``permits.hdab``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from federation.flower_app import released_app
from permits import TrustList, trusted_key
from permits.model import Permit
from permits.signing import sign_permit
from permits.statuslist import StatusEntry, build_status_list, sign_status_list
from trust import generate_jwk as generate_key
from trust import thumbprint


@dataclass(frozen=True)
class DevPermitWorld:
    root: Path
    permit_token: str
    permit_jti: str
    trust_list: Path
    status_list: Path
    user_key: Path
    holders: tuple[str, ...]


def build_permit_world(
    root: str | Path,
    *,
    holders: Sequence[str],
    spec_hash: str,
    jti: str = "permit-dev-1",
    strategies: Sequence[str] = ("bagging", "cyclic"),
    max_rounds: int = 200,
    max_depth: int = 6,
    min_rows_per_site: int = 50,
    min_rows_per_leaf: int = 5,
    outputs: Sequence[str] = ("model", "aggregate_metrics"),
    operations: Sequence[str] = ("train", "evaluate"),
    revoked: bool = False,
    app: Mapping[str, str] | None = None,
    pin_app: bool = True,
) -> DevPermitWorld:
    """``app`` is the permit's authorised Flower app; by default the one this
    project deploys (:func:`federation.flower_app.released_app`). ``pin_app=False``
    issues a permit naming no app (every deployment run is then refused)."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    hdab_key = generate_key()
    user_key = generate_key()
    now = int(time.time())
    permit = Permit.model_validate(
        {
            "jti": jti,
            "iss": {"id": "hdab-dev", "country": "BE"},
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 30 * 86400,
            "version": 1,
            "holder_of_permit": {
                "id": "research-org",
                "name": "Research Organisation",
                "country": "BE",
                "sector": "public",
                "kid": thumbprint(user_key),
            },
            "purpose": {"codes": ["e.ii"], "description": "Federated model training (dev)."},
            "data": [
                {
                    "holder": h,
                    "datasets": ["ehr"],
                    "feature_spec_hash": spec_hash,
                    "time_range": {"start": "2015-01-01", "end": "2026-12-31"},
                    "form": "anonymised",
                }
                for h in holders
            ],
            "processing": {
                "operations": list(operations),
                "federated_xgboost": {
                    "strategies": list(strategies),
                    "max_rounds": max_rounds,
                    "max_depth": max_depth,
                    "min_rows_per_site": min_rows_per_site,
                    "min_rows_per_leaf": min_rows_per_leaf,
                    "outputs": list(outputs),
                },
                **({"app": dict(app) if app else released_app()} if pin_app else {}),
            },
            "opt_out": {"applied": True},
            "spe": {"id": "spe-dev"},
        }
    )
    token = sign_permit(permit, [hdab_key])
    trust = TrustList([trusted_key(hdab_key, "hdab-dev", "BE")])
    trust_path = base / "trust_list.json"
    trust_path.write_bytes(orjson.dumps(trust.to_dict()))
    entry = StatusEntry(
        status="revoked" if revoked else "valid",
        version=1,
        hash=permit.permit_hash(),
        reason="dev_revoked" if revoked else None,
    )
    status = build_status_list("hdab-dev", 1, now - 5, {jti: entry})
    status_path = base / "status_list.jws"
    status_path.write_text(sign_status_list(status, hdab_key))
    hdab_path = base / "hdab_key.jwk"  # tests re-sign status lists (rollback, revocation)
    hdab_path.write_text(hdab_key.export_private())
    hdab_path.chmod(0o600)
    user_path = base / "user_key.jwk"
    user_path.write_text(user_key.export_private())
    user_path.chmod(0o600)
    (base / "permit.jws").write_text(token)
    return DevPermitWorld(
        root=base,
        permit_token=token,
        permit_jti=jti,
        trust_list=trust_path,
        status_list=status_path,
        user_key=user_path,
        holders=tuple(holders),
    )
