"""Every attack of the acceptance list is refused, each with its own reason code.

Each test also checks the decision was written as ``access.denied`` with that code
and that the denial carries no permit content (see ``World.assert_denied``).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest
from jwcrypto import jwk
from jwcrypto.jws import JWS, JWSCore

from permits.reasons import ReasonCode
from permits.signing import PERMIT_TYP
from tests.permits.helpers import DAY, SPEC_B, World, build_world, train_params
from trust import b64url_decode, b64url_encode, canonical_json, thumbprint
from trust import generate_jwk as generate_key


def _forge(
    world: World,
    header: Mapping[str, object],
    key: jwk.JWK | None,
    alg: str,
    payload: bytes | None = None,
) -> str:
    """A compact token with an arbitrary protected header, signed by ``key`` with ``alg``."""
    payload = payload if payload is not None else _payload(world.issued.token)
    protected = b64url_encode(canonical_json(header))
    if key is None:
        return f"{protected}.{b64url_encode(payload)}."
    core = JWSCore(alg, key, b64url_decode(protected).decode(), payload, algs=[alg])
    return f"{protected}.{b64url_encode(payload)}.{core.sign()['signature']}"


def _payload(token: str) -> bytes:
    return b64url_decode(token.split(".")[1])


def test_alg_none(world: World) -> None:
    token = _forge(
        world, {"alg": "none", "kid": thumbprint(world.hdab_key), "typ": PERMIT_TYP}, None, "none"
    )
    world.assert_denied(world.request(token=token), ReasonCode.ALG_NONE)


def test_hs256_signed_with_the_hdab_public_key(world: World) -> None:
    public = world.hdab_key.export_public(as_dict=True)
    for secret in (public["x"].encode(), world.hdab_key.export_to_pem()):
        hmac_key = jwk.JWK(kty="oct", k=b64url_encode(secret))
        header = {"alg": "HS256", "kid": thumbprint(world.hdab_key), "typ": PERMIT_TYP}
        token = _forge(world, header, hmac_key, "HS256")
        world.assert_denied(world.request(token=token), ReasonCode.ALG_SYMMETRIC)


def test_attacker_key_reusing_a_trusted_kid(world: World) -> None:
    attacker = generate_key()
    header = {"alg": "EdDSA", "kid": thumbprint(world.hdab_key), "typ": PERMIT_TYP}
    token = _forge(world, header, attacker, "EdDSA")
    world.assert_denied(world.request(token=token), ReasonCode.SIGNATURE_INVALID)
    # ... and with another algorithm than the one pinned for that kid
    es = generate_key("ES256")
    header = {"alg": "ES256", "kid": thumbprint(world.hdab_key), "typ": PERMIT_TYP}
    world.assert_denied(
        world.request(token=_forge(world, header, es, "ES256")), ReasonCode.ALG_MISMATCH
    )


@pytest.mark.parametrize("param", ["jwk", "jku", "x5u", "x5c"])
def test_embedded_key(world: World, param: str) -> None:
    attacker = generate_key()
    values: dict[str, object] = {
        "jwk": attacker.export_public(as_dict=True),
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIB"],
    }
    for kid in (thumbprint(attacker), thumbprint(world.hdab_key)):
        header = {"alg": "EdDSA", "kid": kid, "typ": PERMIT_TYP, param: values[param]}
        token = _forge(world, header, attacker, "EdDSA")
        world.assert_denied(world.request(token=token), ReasonCode.EMBEDDED_KEY)


def test_tampered_payload(world: World) -> None:
    protected, payload, signature = world.issued.token.split(".")
    doc = orjson.loads(b64url_decode(payload))
    doc["processing"]["federated_xgboost"]["max_rounds"] = 10_000
    forged = f"{protected}.{b64url_encode(canonical_json(doc))}.{signature}"
    world.assert_denied(world.request(token=forged), ReasonCode.SIGNATURE_INVALID)


def test_expired_30_seconds_ago_with_default_settings() -> None:
    world = build_world(duration_days=1)
    exp = orjson.loads(_payload(world.issued.token))["exp"]
    world.clock.now = exp + 29  # inside the default 30 s leeway: still allowed
    world.refresh_status()
    assert world.decide(world.request()).allowed
    world.clock.now = exp + 30
    world.assert_denied(world.request(), ReasonCode.PERMIT_EXPIRED)


def test_not_yet_valid() -> None:
    world = build_world(nbf_offset=3600)
    world.assert_denied(world.request(), ReasonCode.PERMIT_NOT_YET_VALID)


def test_revoked(world: World) -> None:
    assert world.decide(world.request()).allowed
    world.service.revoke(world.issued.jti, "breach_of_conditions")
    token = world.service.status_list()
    assert token is not None
    world.guard.status.update(token)
    world.assert_denied(world.request(), ReasonCode.PERMIT_REVOKED)


def test_stale_revocation_list(world: World) -> None:
    assert world.decide(world.request()).allowed
    world.clock.advance(world.max_age + 1)
    world.assert_denied(world.request(), ReasonCode.STATUS_LIST_STALE)


def test_data_holder_not_named(world: World) -> None:
    world.assert_denied(
        world.request(holder="site-z"), ReasonCode.HOLDER_NOT_NAMED, holder="site-z"
    )


def test_request_signed_by_a_key_not_in_the_permit(world: World) -> None:
    world.assert_denied(world.request(key=generate_key()), ReasonCode.REQUESTER_NOT_AUTHORISED)


def test_cosigned_permit_stripped_to_one_signature(cross_world: World) -> None:
    world = cross_world
    assert world.decide(world.request()).allowed
    doc = orjson.loads(world.issued.token)
    assert len(doc["signatures"]) == 2
    lead = doc["signatures"][0]
    stripped = orjson.dumps({"payload": doc["payload"], "signatures": [lead]}).decode()
    # the trap: jwcrypto alone accepts it, because one valid signature is enough for JWS.verify()
    raw = JWS()
    raw.deserialize(stripped)
    raw.verify(world.hdab_key)
    world.assert_denied(world.request(token=stripped), ReasonCode.COSIGNATURE_MISSING)
    # the same as a compact token
    compact = f"{lead['protected']}.{doc['payload']}.{lead['signature']}"
    world.assert_denied(world.request(token=compact), ReasonCode.COSIGNATURE_MISSING)
    # a broken co-signature next to a valid lead signature is not "stripped" but still refused
    broken = dict(doc["signatures"][1], signature=lead["signature"])
    token = orjson.dumps({"payload": doc["payload"], "signatures": [lead, broken]}).decode()
    raw = JWS()
    raw.deserialize(token)
    raw.verify(world.hdab_key)
    world.assert_denied(world.request(token=token), ReasonCode.SIGNATURE_INVALID)


def test_rounds_beyond_the_permit(world: World) -> None:
    assert world.decide(world.request(params=train_params(rounds=6))).allowed
    world.assert_denied(world.request(params=train_params(rounds=5)), ReasonCode.ROUNDS_EXCEEDED)
    decision = world.decide(world.request(params=train_params(rounds=4)))
    assert decision.allowed and decision.rounds_used == 10 and decision.rounds_remaining == 0
    world.assert_denied(world.request(params=train_params(rounds=1)), ReasonCode.ROUNDS_EXCEEDED)


def test_rounds_beyond_the_permit_in_one_request(world: World) -> None:
    world.assert_denied(world.request(params=train_params(rounds=11)), ReasonCode.ROUNDS_EXCEEDED)


@pytest.mark.parametrize(
    "override",
    [{"max_depth": 7}, {"max_depth": 0}, {"min_child_weight": 9.99}, {"min_child_weight": 0.0}],
)
def test_parameters_beyond_bounds(world: World, override: dict[str, object]) -> None:
    world.assert_denied(
        world.request(params=train_params(**override)), ReasonCode.PARAMETER_OUT_OF_BOUNDS
    )


def test_feature_spec_hash_mismatch(world: World) -> None:
    world.assert_denied(
        world.request(params=train_params(spec_hash=SPEC_B)), ReasonCode.SPEC_HASH_MISMATCH
    )


def test_replayed_request(world: World) -> None:
    request = world.request()
    assert world.decide(request).allowed
    world.assert_denied(request, ReasonCode.REQUEST_REPLAYED)
    world.clock.advance(DAY)  # long after the request's window it is expired, not forgotten
    world.refresh_status()
    world.assert_denied(request, ReasonCode.REQUEST_EXPIRED)


def test_hdab_key_declared_only_for_status_lists_cannot_sign_permits(world: World) -> None:
    from permits import TrustList, trusted_key
    from tests.permits.helpers import T0
    from trust import KeyUse

    world.trust = TrustList(
        [trusted_key(world.hdab_key, "hdab-fi", "FI", valid_from=T0 - DAY, uses={KeyUse.STATUS})]
    )
    world.assert_denied(world.request(), ReasonCode.KEY_USE_NOT_ALLOWED)
