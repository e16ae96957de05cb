"""The HDAB lifecycle on a real database (SQLite and PostgreSQL), each step in the audit log."""

from __future__ import annotations

from pathlib import Path

import pytest

from permits import TrustList, trusted_key
from permits.audit import MemorySink
from permits.errors import HdabNotFoundError, HdabPolicyError, HdabStateError, PermitModelError
from permits.hdab import HdabService
from permits.reasons import ReasonCode
from permits.statuslist import StatusListStore
from permits.verify import PermitVerifier
from tests.permits.helpers import T0, Clock, application
from trust import generate_jwk as generate_key


def _lifecycle(db: str) -> None:
    clock, sink = Clock(), MemorySink()
    key, person, org = generate_key(), generate_key(), generate_key()
    service = HdabService(db, hdab_id="hdab-fi", country="FI", key=key, sink=sink, clock=clock)
    trust = TrustList([trusted_key(key, "hdab-fi", "FI")])
    verifier = PermitVerifier(trust, clock=clock)

    record = service.apply(application(org, person))
    assert record.status == "pending" and record.application_hash.startswith("sha256:")
    assert service.approve(record.id).status == "approved"
    issued = service.issue(record.id)
    v1 = verifier.verify(issued.token)
    assert v1.permit.version == 1 and v1.permit_hash == issued.permit_hash

    clock.advance(60)
    amended = service.amend(issued.jti, {"conditions": ["Publish results within 18 months."]})
    v2 = verifier.verify(amended.token)
    assert v2.permit.version == 2 and v2.permit.supersedes == issued.permit_hash
    assert v2.permit.jti == issued.jti and v2.permit.conditions

    clock.advance(60)
    status_version = service.revoke(issued.jti, "breach_of_conditions")
    assert status_version == amended.status_list_version + 1

    # each step is in the audit log, in order, with the contract's detail keys
    assert sink.types() == [
        "permit.applied",
        "permit.approved",
        "permit.issued",
        "statuslist.published",
        "permit.amended",
        "statuslist.published",
        "permit.revoked",
        "statuslist.published",
    ]
    events = sink.events
    assert events[0].subject == {"application": record.id}
    assert events[0].details == {"application_hash": record.application_hash, "purpose": "e.ii"}
    assert events[1].details == {"reason": "approved", "application_hash": record.application_hash}
    assert events[2].subject == {"permit": issued.jti, "application": record.id}
    assert events[2].details == {"permit_hash": issued.permit_hash, "version": 1, "signatures": 1}
    assert events[4].details == {
        "permit_hash": amended.permit_hash,
        "version": 2,
        "signatures": 1,
        "supersedes": issued.permit_hash,
    }
    assert events[6].details == {
        "reason": "breach_of_conditions",
        "status_list_version": status_version,
    }
    assert events[7].details == {"status_list_version": status_version, "revoked_count": 1}

    # the signed status list carries the revocation; a data holder sees it
    store = StatusListStore(trust, clock=clock)
    token = service.status_list()
    assert token is not None
    assert store.update(token).version == status_version
    with pytest.raises(Exception) as info:
        store.check("hdab-fi", issued.jti, 2, amended.permit_hash)
    assert getattr(info.value, "reason", None) is ReasonCode.PERMIT_REVOKED

    # the public register: both versions, revoked, no authorised persons
    register = service.register()
    assert [(p["version"], p["status"]) for p in register["permits"]] == [
        (1, "superseded"),
        (2, "revoked"),
    ]
    assert "person-7f3a" not in str(register)
    assert register["refusals"] == []

    # a second service instance on the same database sees the same state
    again = HdabService(db, hdab_id="hdab-fi", country="FI", key=key, sink=sink, clock=clock)
    assert again.permit_token(issued.jti) == amended.token
    assert again.permit_token(issued.jti, version=1) == issued.token
    with pytest.raises(HdabStateError):
        again.revoke(issued.jti, "again")


def test_lifecycle_sqlite(tmp_path: Path) -> None:
    _lifecycle(f"sqlite:///{tmp_path / 'hdab.sqlite'}")


@pytest.mark.postgres
def test_lifecycle_postgres(pg_schema_url: str) -> None:
    _lifecycle(pg_schema_url)


def _service() -> tuple[HdabService, MemorySink]:
    sink = MemorySink()
    return HdabService(
        "sqlite://", hdab_id="hdab-fi", country="FI", key=generate_key(), sink=sink, clock=Clock()
    ), sink


def test_prohibited_use_is_refused_and_registered() -> None:
    service, sink = _service()
    record = service.apply(
        application(generate_key(), generate_key(), uses=("model_training", "insurance_pricing"))
    )
    decided = service.approve(record.id)
    assert decided.status == "refused" and decided.reason == "prohibited_use"
    assert sink.events[-1].type == "permit.refused"
    assert sink.events[-1].details["reason"] == "prohibited_use"
    with pytest.raises(HdabStateError):
        service.issue(record.id)
    refusals = service.register()["refusals"]
    assert refusals == [
        {
            "application": record.id,
            "applicant": "org-research-1",
            "purposes": ["e.ii"],
            "reason": "prohibited_use",
            "decided_at": T0,
        }
    ]


def test_public_sector_only_purposes() -> None:
    service, _ = _service()
    private = service.apply(application(generate_key(), generate_key(), codes=("c",)))
    assert service.approve(private.id).reason == "public_sector_only"
    public = service.apply(
        application(generate_key(), generate_key(), codes=("c",), sector="public")
    )
    assert service.approve(public.id).status == "approved"


def test_explicit_refusal_and_states() -> None:
    service, _ = _service()
    record = service.apply(application(generate_key(), generate_key()))
    with pytest.raises(HdabStateError):
        service.issue(record.id)
    assert service.refuse(record.id, "insufficient_justification").status == "refused"
    with pytest.raises(HdabStateError):
        service.approve(record.id)
    with pytest.raises(HdabStateError):
        service.refuse(record.id, "Free text with a name")
    with pytest.raises(HdabNotFoundError):
        service.approve("app-missing")
    with pytest.raises(PermitModelError) as info:
        service.apply({"holder_of_permit": {}})
    assert info.value.code == "PERMIT_INVALID"


def test_amendment_cannot_introduce_a_prohibited_use() -> None:
    service, _ = _service()
    record = service.apply(application(generate_key(), generate_key()))
    service.approve(record.id)
    issued = service.issue(record.id)
    purpose = {"codes": ["e.ii"], "description": "x", "declared_uses": ["marketing"]}
    with pytest.raises(HdabPolicyError) as info:
        service.amend(issued.jti, {"purpose": purpose})
    assert info.value.code == "HDAB_PROHIBITED_USE"
    with pytest.raises(HdabStateError):
        service.amend(issued.jti, {"version": 7})


def test_cross_border_needs_every_cosignature() -> None:
    service, _ = _service()
    cb = {"lead": "hdab-fi", "co_issuers": ["hdab-se", "hdab-dk"]}
    record = service.apply(application(generate_key(), generate_key(), cross_border=cb))
    service.approve(record.id)
    with pytest.raises(HdabStateError):
        service.issue(record.id, co_signers=[generate_key()])
    issued = service.issue(record.id, co_signers=[generate_key(), generate_key()])
    assert issued.token.startswith("{")


def test_validity_is_capped_at_ten_years() -> None:
    with pytest.raises(PermitModelError):
        _service()[0].apply(application(generate_key(), generate_key(), duration_days=3653))
