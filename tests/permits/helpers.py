"""A complete permit world for tests: an HDAB on a real database, a data holder's guard, a data user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jwcrypto import jwk

from permits import TrustList, trusted_key
from permits.audit import MemorySink
from permits.guard import AccessRequest, Decision, PermitGuard
from permits.hdab import HdabService, IssuedPermit
from permits.reasons import ReasonCode
from permits.request import AccessParams, make_request
from permits.statuslist import StatusListStore
from permits.verify import PermitVerifier
from trust import generate_jwk as generate_key
from trust import thumbprint

T0 = 1_800_000_000
SPEC_A = "sha256:" + "a" * 64
SPEC_B = "sha256:" + "b" * 64
DAY = 86400


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def application(
    org_key: jwk.JWK,
    person_key: jwk.JWK,
    *,
    holders: tuple[str, ...] = ("site-a", "site-b"),
    sector: str = "private",
    codes: tuple[str, ...] = ("e.ii",),
    uses: tuple[str, ...] = ("model_training",),
    cross_border: dict[str, Any] | None = None,
    duration_days: int = 365,
    max_rounds: int = 10,
) -> dict[str, Any]:
    return {
        "holder_of_permit": {
            "id": "org-research-1",
            "name": "Example Research Institute",
            "country": "FI",
            "sector": sector,
            "kid": thumbprint(org_key),
        },
        "authorised_persons": [
            {"id": "person-7f3a", "role": "analyst", "kid": thumbprint(person_key)}
        ],
        "purpose": {
            "codes": list(codes),
            "description": "Train and evaluate a readmission risk model.",
            "declared_uses": list(uses),
        },
        "data": [
            {
                "holder": h,
                "datasets": ["ehr-2020-2024"],
                "feature_spec_hash": SPEC_A,
                "time_range": {"start": "2020-01-01", "end": "2024-12-31"},
                "form": "pseudonymised",
            }
            for h in holders
        ],
        "processing": {
            "operations": ["train", "evaluate"],
            "federated_xgboost": {
                "strategies": ["bagging", "cyclic"],
                "max_rounds": max_rounds,
                "max_depth": 6,
                "min_rows_per_site": 50,
                "min_rows_per_leaf": 10,
                "outputs": ["model", "aggregate_metrics"],
            },
        },
        "opt_out": {"applied": True},
        "spe": {"id": "spe-federated-1", "mode": "federated"},
        "cross_border": cross_border,
        "duration_days": duration_days,
    }


def train_params(**overrides: Any) -> AccessParams:
    base: dict[str, Any] = {
        "spec_hash": SPEC_A,
        "rounds": 1,
        "max_depth": 4,
        "min_child_weight": 10.0,
        "strategy": "bagging",
        "rows": 200,
    }
    base.update(overrides)
    return AccessParams.model_validate(base)


@dataclass
class World:
    clock: Clock
    sink: MemorySink
    hdab_key: jwk.JWK
    trust: TrustList
    service: HdabService
    issued: IssuedPermit
    person_key: jwk.JWK
    org_key: jwk.JWK
    co_keys: list[jwk.JWK] = field(default_factory=list)
    guards: dict[str, PermitGuard] = field(default_factory=dict)
    max_age: int = 3600
    #: the co-issuing HDAB (cross-border worlds): it records the permit and may revoke it
    co_service: HdabService | None = None

    @property
    def guard(self) -> PermitGuard:
        return self.guard_for("site-a")

    def guard_for(self, holder: str) -> PermitGuard:
        if holder not in self.guards:
            store = StatusListStore(self.trust, max_age=self.max_age, clock=self.clock)
            token = self.service.status_list()
            assert token is not None
            store.update(token)
            if self.co_service is not None:  # every signer's list is consulted
                co_token = self.co_service.status_list()
                assert co_token is not None
                store.update(co_token)
            verifier = PermitVerifier(self.trust, clock=self.clock)
            self.guards[holder] = PermitGuard(holder, verifier, store, self.sink, clock=self.clock)
        return self.guards[holder]

    def refresh_status(self) -> None:
        self.service.publish_status_list()
        token = self.service.status_list()
        assert token is not None
        for g in self.guards.values():
            g.status.update(token)

    def request(
        self,
        op: str = "train",
        *,
        holder: str = "site-a",
        key: jwk.JWK | None = None,
        token: str | None = None,
        permit_hash: str | None = None,
        jti: str | None = None,
        params: AccessParams | None = None,
    ) -> AccessRequest:
        params = params or (
            train_params() if op == "train" else AccessParams(spec_hash=SPEC_A, rows=200)
        )
        proof = make_request(
            key or self.person_key,
            permit=jti or self.issued.jti,
            permit_hash=permit_hash or self.issued.permit_hash,
            holder=holder,
            op=op,  # type: ignore[arg-type]
            params=params,
            now=self.clock(),
        )
        return AccessRequest(
            permit=token or self.issued.token,
            proof=proof,
            operation=op,  # type: ignore[arg-type]
            params=params,
        )

    def decide(self, request: AccessRequest, holder: str = "site-a") -> Decision:
        return self.guard_for(holder).decide(request)

    def assert_denied(
        self, request: AccessRequest, reason: ReasonCode, holder: str = "site-a"
    ) -> Decision:
        decision = self.decide(request, holder)
        assert not decision.allowed
        assert decision.reason is reason, decision.reason
        assert decision.permit is None and decision.grant is None  # a denial reveals nothing
        last = self.sink.events[-1]
        assert last.type == "access.denied"
        assert last.details["reason"] == reason.value
        return decision


def build_world(
    db: str = "sqlite://",
    *,
    cross_border: bool = False,
    nbf_offset: int = 0,
    duration_days: int = 365,
    alg: str = "EdDSA",
    sink: MemorySink | None = None,
) -> World:
    clock = Clock()
    sink = sink if sink is not None else MemorySink()
    hdab_key = generate_key(alg)  # type: ignore[arg-type]
    co_keys = [generate_key()] if cross_border else []
    entries = [trusted_key(hdab_key, "hdab-fi", "FI", valid_from=T0 - DAY)]
    entries += [trusted_key(k, "hdab-se", "SE", valid_from=T0 - DAY) for k in co_keys]
    trust = TrustList(entries)
    service = HdabService(db, hdab_id="hdab-fi", country="FI", key=hdab_key, sink=sink, clock=clock)
    person_key, org_key = generate_key(), generate_key("ES256")
    app = application(
        org_key,
        person_key,
        cross_border={"lead": "hdab-fi", "co_issuers": ["hdab-se"]} if cross_border else None,
        duration_days=duration_days,
    )
    record = service.apply(app)
    service.approve(record.id)
    issued = service.issue(record.id, co_signers=co_keys, nbf=int(clock()) + nbf_offset)
    co_service = None
    if cross_border:  # the co-issuer records what it co-signed, so it can revoke it too
        co_service = HdabService(
            "sqlite://",
            hdab_id="hdab-se",
            country="SE",
            key=co_keys[0],
            sink=MemorySink(),
            clock=clock,
        )
        co_service.record_cosigned(issued.token)
    return World(
        clock,
        sink,
        hdab_key,
        trust,
        service,
        issued,
        person_key,
        org_key,
        co_keys,
        co_service=co_service,
    )
