"""Permit decisions through the real ``audit_chain.sink.SignedLogSink`` (schema-checked, signed, in a Merkle log)."""

from __future__ import annotations

from pathlib import Path

from permits.reasons import ReasonCode
from tests.permits.helpers import SPEC_B, build_world, train_params


def test_lifecycle_and_decisions_in_the_signed_log(tmp_path: Path) -> None:
    from audit_chain import EventSigner
    from audit_chain.events import parse_event
    from audit_chain.log import AuditLog
    from audit_chain.sink import SignedLogSink

    signer = EventSigner.generate("hdab-fi")
    log = AuditLog.open(f"sqlite:///{tmp_path / 'audit.sqlite'}", log_id="permits", signer=signer)
    sink = SignedLogSink(log, signer)
    world = build_world(sink=sink)  # type: ignore[arg-type]
    assert world.decide(world.request()).allowed
    denied = world.decide(world.request(params=train_params(spec_hash=SPEC_B)))
    assert denied.reason is ReasonCode.SPEC_HASH_MISMATCH
    denied = world.decide(world.request(token="garbage"))
    assert denied.reason is ReasonCode.TOKEN_MALFORMED
    world.service.amend(world.issued.jti, {"conditions": ["Report yearly."]})
    world.service.revoke(world.issued.jti, "breach_of_conditions")

    events = [parse_event(e.token) for e in log.entries()]
    assert [e.type for e in events] == [
        "permit.applied",
        "permit.approved",
        "permit.issued",
        "statuslist.published",
        "access.allowed",
        "access.denied",
        "access.denied",
        "permit.amended",
        "statuslist.published",
        "permit.revoked",
        "statuslist.published",
    ]
    assert events[5].details["reason"] == "spec_hash_mismatch"
    assert "permit" not in events[6].subject  # nothing unverified is logged as a permit id
    log.checkpoint()
    log.close()


def test_every_reason_code_fits_the_audit_schema() -> None:
    from audit_chain.events import build_event

    for reason in ReasonCode:
        event = build_event(
            "access.denied",
            org="site-a",
            kid="A" * 43,
            subject={"site": "site-a", "permit": "permit-1"},
            details={"reason": reason.value, "operation": "train", "rounds_used": 0},
        )
        assert event.details["reason"] == reason.value
