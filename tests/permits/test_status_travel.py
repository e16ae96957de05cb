"""Status lists at the data holder: version floor across restarts, co-issuer revocation."""

from __future__ import annotations

import pytest

from permits.audit import MemorySink
from permits.errors import HdabStateError, VerificationError
from permits.guard import PermitGuard
from permits.hdab import HdabService
from permits.reasons import ReasonCode
from permits.statuslist import StatusListStore
from permits.verify import PermitVerifier
from tests.permits.helpers import World, build_world


class DictFloor:
    """The guard state's version floor, as a dict (SqliteGuardState in production)."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}

    def highest(self, hdab: str) -> int | None:
        return self.versions.get(hdab)

    def raise_to(self, hdab: str, version: int) -> None:
        self.versions[hdab] = max(version, self.versions.get(hdab, 0))


def test_an_older_list_is_refused_after_a_restart() -> None:
    world = build_world()
    old = world.service.status_list()
    world.service.revoke(world.issued.jti, "breach_of_conditions")
    new = world.service.status_list()
    assert old is not None and new is not None
    floor = DictFloor()
    StatusListStore(world.trust, clock=world.clock, floor=floor).update(new)
    restarted = StatusListStore(world.trust, clock=world.clock, floor=floor)  # empty memory
    with pytest.raises(VerificationError) as exc:
        restarted.update(old)
    assert exc.value.reason is ReasonCode.STATUS_LIST_ROLLBACK
    # without the persisted floor the restart would have un-revoked the permit
    StatusListStore(world.trust, clock=world.clock).update(old)


def test_list_info_reports_version_age_and_freshness() -> None:
    world = build_world()
    store = StatusListStore(world.trust, clock=world.clock, max_age=100)
    token = world.service.status_list()
    assert token is not None
    status = store.update(token)
    world.clock.advance(150)
    (info,) = store.info()
    assert (info.hdab, info.version, info.fresh) == ("hdab-fi", status.version, False)
    assert info.age >= 150


def _co_issuer(world: World) -> HdabService:
    return HdabService(
        "sqlite://",
        hdab_id="hdab-se",
        country="SE",
        key=world.co_keys[0],
        sink=MemorySink(),
        clock=world.clock,
    )


def test_a_co_issuer_can_revoke_a_cross_border_permit() -> None:
    world = build_world(cross_border=True)
    co = world.co_service
    assert co is not None  # it recorded the permit it co-signed (record_cosigned)
    assert world.decide(world.request()).allowed  # the guard holds both HDABs' lists
    co.revoke(world.issued.jti, "breach_of_conditions")
    revoked = co.status_list()
    assert revoked is not None
    world.guard.status.update(revoked)
    world.assert_denied(world.request(), ReasonCode.PERMIT_REVOKED)


def test_without_the_co_issuers_list_the_guard_fails_closed() -> None:
    world = build_world(cross_border=True)
    lead_only = StatusListStore(world.trust, clock=world.clock)
    token = world.service.status_list()
    assert token is not None
    lead_only.update(token)
    guard = PermitGuard(
        "site-a",
        PermitVerifier(world.trust, clock=world.clock),
        lead_only,
        MemorySink(),
        clock=world.clock,
    )
    decision = guard.decide(world.request())
    assert not decision.allowed and decision.reason is ReasonCode.STATUS_LIST_MISSING


def test_a_co_issuer_records_only_permits_it_signed() -> None:
    world = build_world(cross_border=True)
    national = build_world()  # signed by another HDAB only
    with pytest.raises(HdabStateError):
        _co_issuer(world).record_cosigned(national.issued.token)
    impostor = HdabService(  # the right key, but an HDAB the permit does not name
        "sqlite://", hdab_id="hdab-xx", country="SE", key=world.co_keys[0], sink=MemorySink()
    )
    with pytest.raises(HdabStateError):
        impostor.record_cosigned(world.issued.token)


def test_a_status_list_signed_by_a_permit_only_key_is_refused() -> None:
    """A stolen permit key cannot sign a list that un-revokes anything."""
    from permits import generate_key, trusted_key
    from permits.statuslist import build_status_list, sign_status_list
    from permits.trust_list import TrustList

    world = build_world()
    permit_key, status_key = generate_key(), generate_key()
    trust = TrustList(
        [
            trusted_key(permit_key, "hdab-fi", "FI", uses={"permit"}),
            trusted_key(status_key, "hdab-fi", "FI", uses={"status"}),
        ]
    )
    status = build_status_list("hdab-fi", 7, int(world.clock()), {})
    store = StatusListStore(trust, clock=world.clock)
    store.update(sign_status_list(status, status_key))  # the status key may
    with pytest.raises(VerificationError) as exc:
        store.update(
            sign_status_list(build_status_list("hdab-fi", 8, int(world.clock()), {}), permit_key)
        )
    assert exc.value.reason is ReasonCode.KEY_USE_NOT_ALLOWED
    assert store.get("hdab-fi") is not None and store.get("hdab-fi").version == 7  # type: ignore[union-attr]
