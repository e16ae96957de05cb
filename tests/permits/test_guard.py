"""Guard behaviour beyond the attack list: allowed paths, caching, amendments, fail-closed edges."""

from __future__ import annotations

import orjson
import pytest

from permits import TrustList, trusted_key
from permits.audit import MemorySink
from permits.guard import AccessRequest, PermitGuard
from permits.model import Permit
from permits.reasons import ReasonCode
from permits.request import AccessParams
from permits.signing import PERMIT_TYP, sign_permit
from permits.statuslist import StatusListStore
from permits.verify import PermitVerifier
from tests.permits.helpers import DAY, SPEC_A, T0, World, build_world, train_params
from trust import canonical_json, thumbprint
from trust import generate_jwk as generate_key


def _permit(world: World) -> Permit:
    from trust import parse_jws

    return Permit.model_validate_json(parse_jws(world.issued.token).payload)


def test_train_and_evaluate_are_allowed_and_audited(world: World) -> None:
    decision = world.decide(world.request())
    assert decision.allowed and decision.reason is ReasonCode.OK
    assert decision.grant is not None and decision.grant.feature_spec_hash == SPEC_A
    ev = world.sink.events[-1]
    assert ev.type == "access.allowed"
    assert ev.subject == {"site": "site-a", "permit": world.issued.jti}
    # the access event names the requester: the authorised person's key, not a name
    assert ev.details == {
        "reason": "ok",
        "operation": "train",
        "rounds_used": 1,
        "requester": thumbprint(world.person_key),
    }
    decision = world.decide(world.request("evaluate"))
    assert decision.allowed and decision.rounds_used == 1  # evaluation uses no rounds


def test_the_organisation_key_may_sign_requests(world: World) -> None:
    assert world.decide(world.request(key=world.org_key)).allowed  # ES256 key


def test_verified_permits_are_cached(world: World) -> None:
    guard = world.guard
    for _ in range(3):
        assert world.decide(world.request()).allowed
    assert guard.cache_hits == 2
    # a trust-list change (key compromised) invalidates the cache and denies
    guard.verifier.trust = guard.verifier.trust.mark_compromised(
        thumbprint(world.hdab_key), T0 - 10
    )
    world.assert_denied(world.request(), ReasonCode.KEY_COMPROMISED)


def test_signed_parameters_must_equal_executed_ones(world: World) -> None:
    signed = world.request(params=train_params(max_depth=3))
    tampered = AccessRequest(signed.permit, signed.proof, "train", train_params(max_depth=6))
    world.assert_denied(tampered, ReasonCode.REQUEST_MISMATCH)
    other_op = AccessRequest(
        signed.permit, world.request().proof, "evaluate", AccessParams(spec_hash=SPEC_A)
    )
    world.assert_denied(other_op, ReasonCode.REQUEST_MISMATCH)


def test_request_for_another_holder_is_refused(world: World) -> None:
    world.guard_for("site-b")
    world.assert_denied(world.request(holder="site-b"), ReasonCode.REQUEST_NOT_FOR_HOLDER)


def test_strategy_and_rows(world: World) -> None:
    world.assert_denied(world.request(params=train_params(rows=49)), ReasonCode.TOO_FEW_ROWS)
    world.assert_denied(world.request(params=train_params(rounds=0)), ReasonCode.REQUEST_MALFORMED)


def test_strategy_not_allowed() -> None:
    world = build_world()
    permit = _permit(world)
    assert "cyclic" in permit.processing.federated_xgboost.strategies
    xgb = permit.processing.federated_xgboost.model_copy(update={"strategies": ["bagging"]})
    issued = world.service.amend(
        world.issued.jti,
        {"processing": {"operations": ["train"], "federated_xgboost": xgb.model_dump()}},
    )
    world.refresh_status()
    req = world.request(
        token=issued.token, permit_hash=issued.permit_hash, params=train_params(strategy="cyclic")
    )
    world.assert_denied(req, ReasonCode.STRATEGY_NOT_ALLOWED)
    req = world.request("evaluate", token=issued.token, permit_hash=issued.permit_hash)
    world.assert_denied(req, ReasonCode.OPERATION_NOT_ALLOWED)


def test_amendment_supersedes_and_keeps_counting_rounds(world: World) -> None:
    assert world.decide(world.request(params=train_params(rounds=8))).allowed
    amended = world.service.amend(world.issued.jti, {"conditions": ["Report yearly."]})
    assert amended.version == 2
    world.refresh_status()
    world.assert_denied(world.request(), ReasonCode.PERMIT_SUPERSEDED)
    new = world.request(
        token=amended.token, permit_hash=amended.permit_hash, params=train_params(rounds=2)
    )
    decision = world.decide(new)
    assert decision.allowed and decision.rounds_used == 10
    # a proof bound to version 1 cannot be used with version 2
    old_proof = world.request(params=train_params(rounds=1))
    world.assert_denied(
        AccessRequest(amended.token, old_proof.proof, "train", old_proof.params),
        ReasonCode.REQUEST_NOT_FOR_PERMIT,
    )


def test_validly_signed_but_never_issued_permit_is_unknown(world: World) -> None:
    forged = _permit(world).model_copy(update={"jti": "permit-never-issued"})
    token = sign_permit(forged, [world.hdab_key])
    world.assert_denied(
        world.request(token=token, jti=forged.jti, permit_hash=forged.permit_hash()),
        ReasonCode.PERMIT_UNKNOWN,
    )
    changed = _permit(world).model_copy(update={"conditions": ["changed"]})
    token = sign_permit(changed, [world.hdab_key])
    req = world.request(token=token, permit_hash=changed.permit_hash())
    world.assert_denied(req, ReasonCode.PERMIT_HASH_MISMATCH)


def test_missing_status_list_denies(world: World) -> None:
    guard = PermitGuard(
        "site-a",
        PermitVerifier(world.trust, clock=world.clock),
        StatusListStore(world.trust, clock=world.clock),
        world.sink,
        clock=world.clock,
    )
    world.guards["site-a"] = guard
    world.assert_denied(world.request(), ReasonCode.STATUS_LIST_MISSING)


def test_key_rotation_retired_key_stays_valid_compromised_key_does_not() -> None:
    world = build_world()
    kid = thumbprint(world.hdab_key)
    # retire the key one hour after issuing: the permit stays valid until it expires
    world.clock.advance(3600)
    new_key = generate_key()
    trust = world.trust.retire(kid, int(world.clock())).with_key(
        trusted_key(new_key, "hdab-fi", "FI", valid_from=int(world.clock()))
    )
    world.trust = trust
    world.service.rotate_key(new_key)
    world.refresh_status()  # signed by the new key now
    world.guard.verifier.trust = trust
    world.guard.status.trust = trust
    world.refresh_status()
    assert world.decide(world.request()).allowed
    # a permit signed by the retired key after its window is refused
    late = _permit(world).model_copy(update={"iat": int(world.clock()) + 1})
    token = sign_permit(late, [world.hdab_key])
    world.assert_denied(
        world.request(token=token, permit_hash=late.permit_hash()), ReasonCode.KEY_NOT_VALID
    )
    # the new key is marked compromised from now: what it signs afterwards is refused
    world.guard.verifier.trust = trust.mark_compromised(thumbprint(new_key), int(world.clock()))
    later = _permit(world).model_copy(update={"iat": int(world.clock()) + 1})
    token = sign_permit(later, [new_key])
    world.assert_denied(
        world.request(token=token, permit_hash=later.permit_hash()), ReasonCode.KEY_COMPROMISED
    )


def test_header_edge_cases(world: World) -> None:
    from jwcrypto.jws import JWSCore

    from trust import b64url_decode, b64url_encode

    payload = b64url_decode(world.issued.token.split(".")[1])

    def forged(header: dict[str, object]) -> str:
        protected = b64url_encode(canonical_json(header))
        sig = JWSCore("EdDSA", world.hdab_key, b64url_decode(protected).decode(), payload).sign()[
            "signature"
        ]
        return f"{protected}.{b64url_encode(payload)}.{sig}"

    kid = thumbprint(world.hdab_key)
    world.assert_denied(
        world.request(
            token=forged({"alg": "EdDSA", "kid": kid, "typ": PERMIT_TYP, "crit": ["exp"]})
        ),
        ReasonCode.CRIT_UNSUPPORTED,
    )
    world.assert_denied(
        world.request(token=forged({"alg": "EdDSA", "kid": "nope", "typ": PERMIT_TYP})),
        ReasonCode.KID_UNKNOWN,
    )
    world.assert_denied(
        world.request(token=forged({"alg": "EdDSA", "kid": kid, "typ": "JWT"})),
        ReasonCode.TYPE_MISMATCH,
    )
    world.assert_denied(
        world.request(token=forged({"alg": "RS256", "kid": kid, "typ": PERMIT_TYP})),
        ReasonCode.ALG_NOT_ALLOWED,
    )
    world.assert_denied(world.request(token="not-a-token"), ReasonCode.TOKEN_MALFORMED)
    p, pl, s = world.issued.token.split(".")
    world.assert_denied(world.request(token=f"{p}.{pl}.{s}="), ReasonCode.TOKEN_MALFORMED)
    unprotected = orjson.dumps(
        {"payload": pl, "protected": p, "signature": s, "header": {"kid": kid}}
    ).decode()
    world.assert_denied(world.request(token=unprotected), ReasonCode.UNPROTECTED_HEADER)
    flattened = orjson.dumps({"payload": pl, "protected": p, "signature": s}).decode()
    assert world.decide(world.request(token=flattened)).allowed


def test_audit_failure_on_allow_denies_and_releases_rounds(world: World) -> None:
    class Broken(MemorySink):
        def record(self, type: str, **kw: object) -> None:
            raise RuntimeError("disk full")

    guard = world.guard
    guard.sink = Broken()
    decision = guard.decide(world.request())
    assert not decision.allowed and decision.reason is ReasonCode.AUDIT_UNAVAILABLE
    assert guard.ledger.used(f"hdab-fi/{world.issued.jti}") == 0
    assert guard.audit_failures == 2
    assert guard.stats["audit_unavailable"] == 1


@pytest.mark.parametrize("alg", ["ES256"])
def test_es256_hdab(alg: str) -> None:
    world = build_world(alg=alg)
    assert world.decide(world.request()).allowed


def test_status_list_rollback_is_refused(world: World) -> None:
    first = world.service.status_list()
    world.refresh_status()
    assert first is not None
    with pytest.raises(Exception) as info:
        world.guard.status.update(first)
    assert getattr(info.value, "reason", None) is ReasonCode.STATUS_LIST_ROLLBACK


def test_status_list_from_another_hdab_key_is_refused(world: World) -> None:
    from permits.statuslist import StatusList, sign_status_list

    other = generate_key()
    trust = TrustList([*world.trust, trusted_key(other, "hdab-de", "DE")])
    store = StatusListStore(trust, clock=world.clock)
    token = sign_status_list(StatusList(iss="hdab-fi", version=99, iat=T0, entries={}), other)
    with pytest.raises(Exception) as info:
        store.update(token)
    assert getattr(info.value, "reason", None) is ReasonCode.SIGNER_UNEXPECTED
    assert DAY > 0


def test_stolen_permit_key_with_backdated_iat_is_still_refused() -> None:
    """With a separate status-list key, a thief holding the permit key gains nothing."""
    from permits.hdab import HdabService
    from tests.permits.helpers import Clock, application

    clock, sink = Clock(), MemorySink()
    permit_key, status_key, person = generate_key(), generate_key(), generate_key()
    trust = TrustList(
        [trusted_key(permit_key, "hdab-fi", "FI"), trusted_key(status_key, "hdab-fi", "FI")]
    )
    service = HdabService(
        "sqlite://",
        hdab_id="hdab-fi",
        country="FI",
        key=permit_key,
        status_key=status_key,
        sink=sink,
        clock=clock,
    )
    record = service.apply(application(generate_key(), person))
    service.approve(record.id)
    issued = service.issue(record.id)
    clock.advance(3600)
    trust = trust.mark_compromised(thumbprint(permit_key), int(clock()))
    store = StatusListStore(trust, clock=clock)
    service.publish_status_list()
    token = service.status_list()
    assert token is not None
    store.update(token)
    guard = PermitGuard("site-a", PermitVerifier(trust, clock=clock), store, sink, clock=clock)

    def request(permit_token: str, permit_hash: str) -> AccessRequest:
        from permits.request import make_request

        params = train_params()
        proof = make_request(
            person,
            permit=issued.jti,
            permit_hash=permit_hash,
            holder="site-a",
            op="train",
            params=params,
            now=clock(),
        )
        return AccessRequest(permit_token, proof, "train", params)

    # the genuine permit, signed before the compromise, still works
    assert guard.decide(request(issued.token, issued.permit_hash)).allowed
    # a forgery with wider bounds, backdated before the compromise time
    from trust import parse_jws

    genuine = Permit.model_validate_json(parse_jws(issued.token).payload)
    xgb = genuine.processing.federated_xgboost.model_copy(update={"max_rounds": 10_000})
    forged = genuine.model_copy(
        update={"processing": genuine.processing.model_copy(update={"federated_xgboost": xgb})}
    )
    token = sign_permit(forged, [permit_key])
    decision = guard.decide(request(token, forged.permit_hash()))
    assert not decision.allowed and decision.reason is ReasonCode.PERMIT_HASH_MISMATCH
    # signed "now" with the stolen key: refused as compromised
    late = forged.model_copy(update={"iat": int(clock())})
    decision = guard.decide(request(sign_permit(late, [permit_key]), late.permit_hash()))
    assert decision.reason is ReasonCode.KEY_COMPROMISED
