"""Signed-request verification: every way a signature can be wrong has its own code."""

from __future__ import annotations

import base64
import json
import time

import orjson
import pytest
from jwcrypto import jwk, jws

from gateway.client_keys import KeyRing
from gateway.errors import AuthError, ConfigError, ForbiddenError, UnavailableError
from gateway.http.auth import ReplayCache, RequestVerifier, require_role, sign_request
from trust import generate_jwk as generate_key
from trust import thumbprint

AUD = "hdab-x"


@pytest.fixture
def key() -> jwk.JWK:
    return generate_key()


@pytest.fixture
def verifier(key: jwk.JWK) -> RequestVerifier:
    ring = KeyRing()
    ring.add(key, org="org-1", roles=["data_user"])
    return RequestVerifier(ring, audience=AUD, skew_seconds=30, replay_cache_size=1000)


def b64(data: dict[str, object] | bytes) -> str:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "htm": "POST",
        "htu": "/x",
        "aud": AUD,
        "bh": "sha256:" + "0" * 64,
        "iat": int(time.time()),
        "jti": "n" * 22,
    }
    base.update(over)
    return base


def verify(v: RequestVerifier, header: str | None, body: bytes = b"{}", path: str = "/x") -> str:
    try:
        v.verify(header, method="POST", path=path, body=body)
    except AuthError as exc:
        return exc.code
    return "OK"


def test_valid_then_replayed(verifier: RequestVerifier, key: jwk.JWK) -> None:
    header = sign_request(key, method="POST", path="/x", body=b"{}", audience=AUD)
    assert verify(verifier, header) == "OK"
    assert verify(verifier, header) == "AUTH_REPLAY"


def test_es256_keys_work() -> None:
    key = generate_key("ES256")
    ring = KeyRing()
    ring.add(key, org="org-2", roles=["hdab_staff"])
    v = RequestVerifier(ring, audience=AUD)
    principal = v.verify(
        sign_request(key, method="GET", path="/y", audience=AUD), method="GET", path="/y", body=b""
    )
    assert principal.org == "org-2" and principal.kid == thumbprint(key)


@pytest.mark.parametrize("skew", [-31, 31, 3600])
def test_outside_time_window(verifier: RequestVerifier, key: jwk.JWK, skew: int) -> None:
    header = sign_request(
        key, method="POST", path="/x", body=b"{}", audience=AUD, now=time.time() + skew
    )
    assert verify(verifier, header) == "AUTH_EXPIRED"


def test_bindings(verifier: RequestVerifier, key: jwk.JWK) -> None:
    assert (
        verify(
            verifier,
            sign_request(key, method="POST", path="/x", body=b"{}", audience=AUD),
            body=b"{ }",
        )
        == "AUTH_MISMATCH"
    )
    assert (
        verify(verifier, sign_request(key, method="PUT", path="/x", body=b"{}", audience=AUD))
        == "AUTH_MISMATCH"
    )
    assert (
        verify(verifier, sign_request(key, method="POST", path="/x?a=1", body=b"{}", audience=AUD))
        == "AUTH_MISMATCH"
    )
    assert (
        verify(verifier, sign_request(key, method="POST", path="/x", body=b"{}", audience="other"))
        == "AUTH_MISMATCH"
    )


def test_missing_and_malformed(verifier: RequestVerifier) -> None:
    assert verify(verifier, None) == "AUTH_MISSING"
    assert verify(verifier, "") == "AUTH_MISSING"
    assert verify(verifier, "Bearer x.y.z") == "AUTH_MALFORMED"
    assert verify(verifier, "EHDS-JWS") == "AUTH_MALFORMED"
    assert verify(verifier, "EHDS-JWS a.b") == "AUTH_MALFORMED"
    assert verify(verifier, "EHDS-JWS !!!.b.c") == "AUTH_MALFORMED"
    assert verify(verifier, "EHDS-JWS " + "a" * 9000 + ".b.c") == "AUTH_MALFORMED"


def test_alg_none_and_hs256_with_public_key(verifier: RequestVerifier, key: jwk.JWK) -> None:
    kid = thumbprint(key)
    none = f"{b64({'alg': 'none', 'kid': kid, 'typ': 'ehds-req+jwt'})}.{b64(claims())}."
    assert verify(verifier, f"EHDS-JWS {none}") == "AUTH_ALG_NOT_ALLOWED"
    secret = jwk.JWK(kty="oct", k=b64(json.dumps(key.export_public(as_dict=True)).encode()))
    token = jws.JWS(orjson.dumps(claims()))
    token.add_signature(
        secret,
        alg="HS256",
        protected=orjson.dumps({"alg": "HS256", "kid": kid, "typ": "ehds-req+jwt"}).decode(),
    )
    assert verify(verifier, f"EHDS-JWS {token.serialize(compact=True)}") == "AUTH_ALG_NOT_ALLOWED"


def test_alg_mismatch_and_embedded_key(verifier: RequestVerifier, key: jwk.JWK) -> None:
    attacker = generate_key("ES256")
    token = jws.JWS(orjson.dumps(claims()))
    token.add_signature(
        attacker,
        alg="ES256",
        protected=orjson.dumps(
            {"alg": "ES256", "kid": thumbprint(key), "typ": "ehds-req+jwt"}
        ).decode(),
    )
    assert verify(verifier, f"EHDS-JWS {token.serialize(compact=True)}") == "AUTH_ALG_MISMATCH"
    token = jws.JWS(orjson.dumps(claims()))
    header = {
        "alg": "EdDSA",
        "kid": thumbprint(key),
        "typ": "ehds-req+jwt",
        "jwk": attacker.export_public(as_dict=True),
    }
    token.add_signature(key, alg="EdDSA", protected=orjson.dumps(header).decode())
    assert (
        verify(verifier, f"EHDS-JWS {token.serialize(compact=True)}") == "AUTH_HEADER_NOT_ALLOWED"
    )


def test_attacker_key_reusing_a_trusted_kid(verifier: RequestVerifier, key: jwk.JWK) -> None:
    attacker = generate_key()
    body = b"{}"
    from gateway.http.auth import body_hash

    token = jws.JWS(orjson.dumps(claims(bh=body_hash(body))))
    token.add_signature(
        attacker,
        alg="EdDSA",
        protected=orjson.dumps(
            {"alg": "EdDSA", "kid": thumbprint(key), "typ": "ehds-req+jwt"}
        ).decode(),
    )
    assert (
        verify(verifier, f"EHDS-JWS {token.serialize(compact=True)}", body=body)
        == "AUTH_BAD_SIGNATURE"
    )


def test_tampered_payload_and_unknown_key(verifier: RequestVerifier, key: jwk.JWK) -> None:
    header = sign_request(key, method="POST", path="/x", body=b"{}", audience=AUD)
    h, _, s = header.split(" ", 1)[1].split(".")
    forged = f"EHDS-JWS {h}.{b64(claims(htu='/y'))}.{s}"
    assert verify(verifier, forged) == "AUTH_BAD_SIGNATURE"
    assert (
        verify(
            verifier,
            sign_request(generate_key(), method="POST", path="/x", body=b"{}", audience=AUD),
        )
        == "AUTH_UNKNOWN_KEY"
    )


def test_wrong_typ_and_bad_nonce(verifier: RequestVerifier, key: jwk.JWK) -> None:
    token = jws.JWS(orjson.dumps(claims()))
    token.add_signature(
        key,
        alg="EdDSA",
        protected=orjson.dumps({"alg": "EdDSA", "kid": thumbprint(key), "typ": "JWT"}).decode(),
    )
    assert verify(verifier, f"EHDS-JWS {token.serialize(compact=True)}") == "AUTH_MALFORMED"
    assert (
        verify(
            verifier,
            sign_request(key, method="POST", path="/x", body=b"{}", audience=AUD, nonce="short"),
        )
        == "AUTH_MALFORMED"
    )


def test_replay_cache_expires_and_fails_closed_when_full() -> None:
    cache = ReplayCache(ttl_seconds=10, max_size=2)
    cache.check_and_add("k", "a", now=0)
    cache.check_and_add("k", "b", now=1)
    with pytest.raises(UnavailableError):
        cache.check_and_add("k", "c", now=2)
    cache.check_and_add("k", "c", now=10.5)  # "a" expired
    with pytest.raises(AuthError):
        cache.check_and_add("k", "c", now=11)


def test_roles() -> None:
    from gateway.http.auth import Principal

    p = Principal("kid", "org", frozenset({"data_user"}))
    require_role(p, frozenset({"data_user", "hdab_staff"}))
    with pytest.raises(ForbiddenError):
        require_role(p, frozenset({"hdab_staff"}))


def test_client_key_file_refuses_private_keys_and_bad_entries(
    tmp_path: object, key: jwk.JWK
) -> None:
    ok = key.export_public(as_dict=True) | {"ehds_org": "org-1", "ehds_roles": ["data_user"]}
    ring = KeyRing.from_jwks({"keys": [ok]})
    assert ring.get(thumbprint(key)) is not None
    assert KeyRing.from_jwks(ring.to_jwks()).get(thumbprint(key)) is not None
    bad = [
        key.export(private_key=True, as_dict=True) | {"ehds_org": "o", "ehds_roles": ["data_user"]},
        ok | {"kid": "not-the-thumbprint"},
        ok | {"ehds_roles": ["root"]},
        ok | {"ehds_org": "Dr. Jane Doe"},
        ok | {"alg": "ES256"},
        {"kty": "oct", "k": "c2VjcmV0", "ehds_org": "o", "ehds_roles": ["data_user"]},
    ]
    for item in bad:
        with pytest.raises(ConfigError):
            KeyRing.from_jwks({"keys": [item]})
