"""trust.keys and trust.jws: pinned algorithms, declared key uses, every signature checked."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from jwcrypto import jwk, jws

from trust import (
    AlgorithmError,
    HeaderError,
    KeyUse,
    KeyUseError,
    MalformedError,
    NotCanonicalError,
    PublicKey,
    SignatureError,
    SigningKey,
    TrustKeyError,
    add_signature,
    b64url_decode,
    b64url_encode,
    parse_jws,
    sign_compact,
    sign_general,
    thumbprint,
    verify_compact,
    verify_jws,
)

TYP = "ehds-test+jws"


@pytest.fixture(params=["EdDSA", "ES256"])
def key(request: pytest.FixtureRequest) -> SigningKey:
    return SigningKey.generate(request.param, uses={KeyUse.AUDIT})


def lookup_of(*keys: SigningKey):  # type: ignore[no-untyped-def]
    table = {k.kid: k.public for k in keys}
    return lambda sig: table[sig.kid]


def test_kid_is_rfc7638_thumbprint_and_alg_pinned(key: SigningKey) -> None:
    assert key.kid == key.jwk.thumbprint()  # jwcrypto's own RFC 7638 computation
    assert len(key.kid) == 43
    assert key.alg == {"OKP": "EdDSA", "EC": "ES256"}[key.jwk.get("kty")]
    with pytest.raises(AlgorithmError):
        PublicKey.from_jwk(key.public.jwk, uses={KeyUse.AUDIT}, alg="RS256")
    with pytest.raises(TrustKeyError, match="thumbprint"):
        PublicKey.from_jwk({**key.public.jwk, "kid": "x" * 43}, uses={KeyUse.AUDIT})


def test_compact_roundtrip_and_jwcrypto_interop(key: SigningKey) -> None:
    token = sign_compact(b'{"a":1}', key, TYP, use=KeyUse.AUDIT)
    parsed, signer = verify_compact(token, typ=TYP, use=KeyUse.AUDIT, lookup=lookup_of(key))
    assert parsed.payload == b'{"a":1}' and signer.kid == key.kid
    # jwcrypto accepts ours ...
    theirs = jws.JWS()
    theirs.deserialize(token)
    theirs.verify(key.public.as_jwcrypto(), alg=key.alg)
    # ... and we accept jwcrypto's
    other = jws.JWS(b"hello")
    header = {"alg": key.alg, "kid": key.kid, "typ": TYP}
    other.add_signature(key.jwk, alg=key.alg, protected=json.dumps(header))
    parsed, _ = verify_compact(
        other.serialize(compact=True), typ=TYP, use=KeyUse.AUDIT, lookup=lookup_of(key)
    )
    assert parsed.payload == b"hello"


def test_key_outside_its_use_is_refused_for_verify_and_sign() -> None:
    witness = SigningKey.generate(uses={KeyUse.WITNESS})
    with pytest.raises(KeyUseError) as err:
        sign_compact(b"{}", witness, TYP, use=KeyUse.PERMIT)
    assert err.value.code == "TRUST_KEY_USE"
    # the signer is honest about its use, the verifier requires another: refused
    token = sign_compact(b"{}", witness, TYP, use=KeyUse.WITNESS)
    with pytest.raises(KeyUseError):
        verify_compact(token, typ=TYP, use=KeyUse.PERMIT, lookup=lookup_of(witness))
    verify_compact(token, typ=TYP, use=KeyUse.WITNESS, lookup=lookup_of(witness))


def test_keys_without_declared_use_are_refused(key: SigningKey) -> None:
    with pytest.raises(TrustKeyError, match="declares no use"):
        PublicKey.from_jwk(key.public.jwk)
    with pytest.raises(TrustKeyError, match="unknown key use"):
        PublicKey.from_jwk({**key.public.jwk, "ehds_uses": ["everything"]})
    assert PublicKey.from_jwk(key.public.to_jwk()).uses == {KeyUse.AUDIT}


def test_save_load_keeps_uses_and_mode(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "k.jwk"
    key.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = SigningKey.load(path)
    assert (again.kid, again.alg, again.uses) == (key.kid, key.alg, key.uses)
    with pytest.raises(FileExistsError):
        key.save(path)  # never overwrite a key
    assert SigningKey.load_or_create(path, uses={KeyUse.AUDIT}).kid == key.kid
    with pytest.raises(TrustKeyError):
        SigningKey(key.public.to_jwk())  # no private part


def test_general_serialization_checks_every_signature() -> None:
    a = SigningKey.generate(uses={KeyUse.PERMIT})
    b = SigningKey.generate("ES256", uses={KeyUse.PERMIT})
    token = sign_general(b'{"p":1}', [a, b], TYP, use=KeyUse.PERMIT)
    signed = verify_jws(parse_jws(token), typ=TYP, use=KeyUse.PERMIT, lookup=lookup_of(a, b))
    assert [k.kid for _, k in signed] == [a.kid, b.kid]
    # break the second signature only: the whole token fails
    doc = orjson.loads(token)
    sig = bytearray(b64url_decode(doc["signatures"][1]["signature"]))
    sig[5] ^= 1
    doc["signatures"][1]["signature"] = b64url_encode(bytes(sig))
    with pytest.raises(SignatureError):
        verify_jws(parse_jws(orjson.dumps(doc)), typ=TYP, use=KeyUse.PERMIT, lookup=lookup_of(a, b))
    # the same key twice is refused, as is an unprotected header
    with pytest.raises(MalformedError):
        add_signature(token, a, TYP, use=KeyUse.PERMIT)
    doc = orjson.loads(token)
    doc["signatures"][0]["header"] = {"kid": a.kid}
    with pytest.raises(HeaderError):
        parse_jws(orjson.dumps(doc))


def test_add_signature_turns_compact_into_general() -> None:
    a = SigningKey.generate(uses={KeyUse.PERMIT})
    b = SigningKey.generate(uses={KeyUse.PERMIT})
    token = add_signature(sign_compact(b"x", a, TYP, use=KeyUse.PERMIT), b, TYP, use=KeyUse.PERMIT)
    signed = verify_jws(parse_jws(token), typ=TYP, use=KeyUse.PERMIT, lookup=lookup_of(a, b))
    assert len(signed) == 2


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ({"alg": "none"}, "TRUST_ALG_NONE"),
        ({"alg": "HS256"}, "TRUST_ALG_SYMMETRIC"),
        ({"alg": "RS256"}, "TRUST_ALG_NOT_ALLOWED"),
        ({"jwk": {"kty": "OKP"}}, "TRUST_EMBEDDED_KEY"),
        ({"jku": "https://example.invalid"}, "TRUST_EMBEDDED_KEY"),
        ({"crit": ["x"]}, "TRUST_CRIT"),
        ({"cty": "json"}, "TRUST_HEADER_PARAM"),
        ({"typ": "other"}, "TRUST_TYP_MISMATCH"),
    ],
)
def test_steering_headers_are_refused(header: dict[str, object], code: str) -> None:
    key = SigningKey.generate(uses={KeyUse.AUDIT})
    full = {"alg": key.alg, "kid": key.kid, "typ": TYP, **header}
    protected = b64url_encode(orjson.dumps(full))
    payload = b64url_encode(b"{}")
    sig = b64url_encode(key.sign(f"{protected}.{payload}".encode(), use=KeyUse.AUDIT))
    with pytest.raises(HeaderError) as err:
        verify_compact(
            f"{protected}.{payload}.{sig}", typ=TYP, use=KeyUse.AUDIT, lookup=lookup_of(key)
        )
    assert err.value.code == code


def test_alg_confusion_is_refused() -> None:
    ed = SigningKey.generate(uses={KeyUse.AUDIT})
    token = sign_compact(b"{}", ed, TYP, use=KeyUse.AUDIT)
    header = {"alg": "ES256", "kid": ed.kid, "typ": TYP}
    forged = b64url_encode(orjson.dumps(header)) + token[token.index(".") :]
    with pytest.raises(AlgorithmError):
        verify_compact(forged, typ=TYP, use=KeyUse.AUDIT, lookup=lookup_of(ed))


def test_non_canonical_base64url_is_refused() -> None:
    key = SigningKey.generate(uses={KeyUse.REQUEST})
    token = sign_compact(b"{}", key, TYP, use=KeyUse.REQUEST)
    head, payload, sig = token.split(".")
    # flip the lowest (unused) bit of the last signature character: same bytes, other text
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tweaked = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    for bad in (
        f"{head}.{payload}.{tweaked}",
        f"{head}.{payload}.{sig}==",
        f"{head}+.{payload}.{sig}",
    ):
        with pytest.raises(MalformedError) as err:
            verify_compact(bad, typ=TYP, use=KeyUse.REQUEST, lookup=lookup_of(key))
        assert err.value.code in {"TRUST_MALFORMED", "TRUST_NOT_CANONICAL"}
    with pytest.raises(NotCanonicalError):
        b64url_decode(tweaked)


def test_tampered_payload_fails(key: SigningKey) -> None:
    token = sign_compact(b'{"a":1}', key, TYP, use=KeyUse.AUDIT)
    head, _, sig = token.split(".")
    forged = ".".join([head, b64url_encode(b'{"a":2}'), sig])
    with pytest.raises(SignatureError):
        verify_compact(forged, typ=TYP, use=KeyUse.AUDIT, lookup=lookup_of(key))


def test_thumbprint_matches_a_jwcrypto_key() -> None:
    k = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    assert thumbprint(k) == k.thumbprint()
