"""JWS (RFC 7515) compact and general JSON serialization, strict, with every signature checked.

Everything a token could use to steer its own verification is decided here
from the verifier's configuration instead:

* the algorithm is pinned per key (``alg`` in the header must equal it);
  ``none``, ``HS*`` and anything but EdDSA/ES256 are refused;
* keys embedded or referenced in the header (``jwk``, ``jku``, ``x5u``,
  ``x5c``, ``x5t``, ``x5t#S256``) and any ``crit`` are refused, unless the
  caller explicitly allows ``jwk`` (DPoP-style requests whose key is trusted
  because its thumbprint is listed elsewhere); unknown header parameters are
  refused; unprotected headers are refused;
* the verifier names the ``typ`` and the key use it requires; a key declared
  for another use fails (:class:`trust.errors.KeyUseError`);
* base64url must be canonical and JSON must have no duplicate members, so the
  bytes we verify are the bytes every other parser sees;
* in the general JSON serialization *every* signature is verified and each
  ``kid`` may sign once; jwcrypto's ``JWS.verify()`` would accept a token if
  any one signature did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from trust.b64 import b64url_decode, b64url_encode
from trust.canonical import canonical_json, strict_json
from trust.errors import (
    HeaderError,
    MalformedError,
    TrustError,
    TrustKeyError,
)
from trust.keys import ALLOWED_ALGS, KeyUse, PublicKey, SigningKey

MAX_TOKEN_BYTES = 256 * 1024
MAX_SIGNATURES = 16
BASE_HEADER = frozenset({"alg", "kid", "typ"})
EMBEDDED_KEY_PARAMS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"})


@dataclass(frozen=True)
class JwsSignature:
    """One signature: its protected header (encoded and parsed) and signature bytes."""

    protected: str
    header: dict[str, Any]
    signature_b64: str
    signature: bytes

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


@dataclass(frozen=True)
class Jws:
    """A parsed, not yet verified, JWS."""

    payload_b64: str
    payload: bytes
    signatures: tuple[JwsSignature, ...]
    serialization: Literal["compact", "json"]

    def signing_input(self, sig: JwsSignature) -> bytes:
        return f"{sig.protected}.{self.payload_b64}".encode("ascii")

    def compact(self) -> str:
        """The compact serialization (only for a token with exactly one signature)."""
        if len(self.signatures) != 1:
            raise MalformedError("a compact JWS has exactly one signature")
        sig = self.signatures[0]
        return f"{sig.protected}.{self.payload_b64}.{sig.signature_b64}"


def _signature(protected: object, signature: object) -> JwsSignature:
    if not isinstance(protected, str) or not isinstance(signature, str) or not protected:
        raise MalformedError("JWS signature entry incomplete")
    try:
        header = strict_json(b64url_decode(protected))
    except MalformedError:
        raise
    except UnicodeDecodeError:
        raise MalformedError("JWS protected header is not UTF-8") from None
    if not isinstance(header, dict):
        raise MalformedError("JWS protected header is not an object")
    return JwsSignature(protected, header, signature, b64url_decode(signature))


def _text(token: str | bytes, max_bytes: int) -> str:
    if isinstance(token, bytes):
        try:
            token = token.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError("JWS is not text") from None
    if not isinstance(token, str):
        raise MalformedError("JWS is not text")
    if len(token) > max_bytes:
        raise MalformedError(f"JWS longer than {max_bytes} bytes")
    return token


def parse_compact(token: str | bytes, *, max_bytes: int = MAX_TOKEN_BYTES) -> Jws:
    """Split and decode a compact JWS; checks shape, not the signature.

    An empty signature part parses (so ``alg: none`` is refused by its header,
    with its own code) and never verifies.
    """
    token = _text(token, max_bytes)
    parts = token.split(".")
    if len(parts) != 3 or not parts[0]:
        raise MalformedError("not a compact JWS (three parts)")
    sig = _signature(parts[0], parts[2])
    return Jws(parts[1], b64url_decode(parts[1]), (sig,), "compact")


def parse_jws(token: str | bytes, *, max_bytes: int = MAX_TOKEN_BYTES) -> Jws:
    """Parse a compact, flattened or general JSON JWS without trusting any of it."""
    token = _text(token, max_bytes).strip()
    if not token:
        raise MalformedError("empty JWS")
    if not token.startswith("{"):
        return parse_compact(token, max_bytes=max_bytes)
    doc = strict_json(token)
    if not isinstance(doc, dict):
        raise MalformedError("JWS JSON is not an object")
    entries = doc.get("signatures")
    if "header" in doc or (
        isinstance(entries, list) and any(isinstance(s, dict) and "header" in s for s in entries)
    ):
        raise HeaderError("unprotected headers are not accepted", code="TRUST_UNPROTECTED_HEADER")
    payload_b64 = doc.get("payload")
    if not isinstance(payload_b64, str):
        raise MalformedError("JWS payload missing (detached payloads are not accepted)")
    if "signatures" in doc:
        if set(doc) != {"payload", "signatures"}:
            raise MalformedError("unexpected members in JWS JSON")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SIGNATURES:
            raise MalformedError(f"signatures must be a list of 1-{MAX_SIGNATURES} entries")
        sigs = []
        for entry in entries:
            if not isinstance(entry, dict) or set(entry) != {"protected", "signature"}:
                raise MalformedError("bad JWS signature entry")
            sigs.append(_signature(entry["protected"], entry["signature"]))
    else:
        if set(doc) != {"payload", "protected", "signature"}:
            raise MalformedError("unexpected members in flattened JWS JSON")
        sigs = [_signature(doc["protected"], doc["signature"])]
    return Jws(payload_b64, b64url_decode(payload_b64), tuple(sigs), "json")


def check_header(
    header: Mapping[str, Any], typ: str, *, allowed: frozenset[str] = BASE_HEADER
) -> str:
    """Refuse every header a token could use to choose its own verification; return ``alg``.

    ``allowed`` names the parameters this token type may carry (always a
    superset of nothing dangerous; only ``jwk`` may be let through, for
    DPoP-style requests).
    """
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise MalformedError("JWS alg missing")
    if alg.lower() == "none":
        raise HeaderError("alg 'none' is never accepted", code="TRUST_ALG_NONE")
    if alg.upper().startswith("HS"):
        raise HeaderError("symmetric algorithms are never accepted", code="TRUST_ALG_SYMMETRIC")
    if (EMBEDDED_KEY_PARAMS - allowed) & header.keys():
        raise HeaderError(
            "keys embedded or referenced in the header are refused", code="TRUST_EMBEDDED_KEY"
        )
    if "crit" in header:
        raise HeaderError("no critical header extension is supported", code="TRUST_CRIT")
    if alg not in ALLOWED_ALGS:
        raise HeaderError(f"algorithm {alg[:16]!r} is not allowed", code="TRUST_ALG_NOT_ALLOWED")
    if set(header) - allowed:
        raise HeaderError("unexpected JWS header parameter", code="TRUST_HEADER_PARAM")
    if header.get("typ") != typ:
        raise HeaderError(f"JWS typ must be {typ}", code="TRUST_TYP_MISMATCH")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise HeaderError("JWS kid missing", code="TRUST_KID_MISSING")
    return alg


KeyLookup = Callable[[JwsSignature], PublicKey]
"""Find the trusted key for one signature (by its ``kid``); raise if there is none."""


def verify_signature(parsed: Jws, sig: JwsSignature, key: PublicKey, *, use: KeyUse) -> None:
    """Verify one signature with one key, the key's pinned algorithm and the required use."""
    alg = sig.header.get("alg")
    if not isinstance(alg, str):
        raise MalformedError("JWS alg missing")
    if sig.header.get("kid") != key.kid:
        raise TrustKeyError("JWS kid is not the verifying key's")
    key.verify(alg, parsed.signing_input(sig), sig.signature, use=use)


def verify_jws(
    parsed: Jws,
    *,
    typ: str,
    use: KeyUse,
    lookup: KeyLookup,
    allowed: frozenset[str] = BASE_HEADER,
) -> list[tuple[JwsSignature, PublicKey]]:
    """Check every header, then verify every signature; one failure fails the token."""
    kids: set[str] = set()
    for sig in parsed.signatures:
        check_header(sig.header, typ, allowed=allowed)
        kid = str(sig.header["kid"])
        if kid in kids:
            raise MalformedError("a key signed the token twice")
        kids.add(kid)
    out = []
    for sig in parsed.signatures:
        key = lookup(sig)
        verify_signature(parsed, sig, key, use=use)
        out.append((sig, key))
    return out


def verify_compact(
    token: str | bytes,
    *,
    typ: str,
    use: KeyUse,
    lookup: KeyLookup,
    allowed: frozenset[str] = BASE_HEADER,
    max_bytes: int = MAX_TOKEN_BYTES,
) -> tuple[Jws, PublicKey]:
    """Parse and verify a compact JWS of type ``typ`` by a key declared for ``use``."""
    parsed = parse_compact(token, max_bytes=max_bytes)
    ((_, key),) = verify_jws(parsed, typ=typ, use=use, lookup=lookup, allowed=allowed)
    return parsed, key


# ------------------------------------------------------------------------------- signing
def encode_header(key: SigningKey, typ: str, extra: Mapping[str, Any] | None = None) -> str:
    """base64url of the canonical protected header; ``alg`` and ``kid`` come from the key."""
    header = {**(extra or {}), "alg": key.alg, "kid": key.kid, "typ": typ}
    return b64url_encode(canonical_json(header))


def sign_protected(protected: str, payload_b64: str, key: SigningKey, *, use: KeyUse) -> str:
    """The base64url signature over ``protected.payload`` (for callers that cache headers)."""
    data = f"{protected}.{payload_b64}".encode("ascii")
    return b64url_encode(key.sign(data, use=use))


def sign_compact(
    payload: bytes,
    key: SigningKey,
    typ: str,
    *,
    use: KeyUse,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Compact JWS over ``payload`` with header ``{alg, kid, typ, **extra}``."""
    protected = encode_header(key, typ, extra)
    payload_b64 = b64url_encode(payload)
    return f"{protected}.{payload_b64}.{sign_protected(protected, payload_b64, key, use=use)}"


def _general(payload_b64: str, entries: Iterable[tuple[str, str]]) -> str:
    signatures = [{"protected": p, "signature": s} for p, s in entries]
    return orjson.dumps({"payload": payload_b64, "signatures": signatures}).decode()


def sign_general(payload: bytes, keys: Sequence[SigningKey], typ: str, *, use: KeyUse) -> str:
    """JWS JSON general serialization with one signature per key."""
    if not keys:
        raise TrustError("at least one signing key is required")
    payload_b64 = b64url_encode(payload)
    entries = []
    for key in keys:
        protected = encode_header(key, typ)
        entries.append((protected, sign_protected(protected, payload_b64, key, use=use)))
    return _general(payload_b64, entries)


def add_signature(token: str | bytes, key: SigningKey, typ: str, *, use: KeyUse) -> str:
    """Append a co-signer's signature (a compact token becomes general JSON)."""
    parsed = parse_jws(token)
    if any(s.kid == key.kid for s in parsed.signatures):
        raise MalformedError("this key has already signed the token")
    if len(parsed.signatures) >= MAX_SIGNATURES:
        raise MalformedError(f"a token holds at most {MAX_SIGNATURES} signatures")
    protected = encode_header(key, typ)
    entries = [(s.protected, s.signature_b64) for s in parsed.signatures]
    entries.append((protected, sign_protected(protected, parsed.payload_b64, key, use=use)))
    return _general(parsed.payload_b64, entries)


__all__ = [
    "BASE_HEADER",
    "EMBEDDED_KEY_PARAMS",
    "MAX_TOKEN_BYTES",
    "Jws",
    "JwsSignature",
    "KeyLookup",
    "add_signature",
    "check_header",
    "encode_header",
    "parse_compact",
    "parse_jws",
    "sign_compact",
    "sign_general",
    "sign_protected",
    "verify_compact",
    "verify_jws",
    "verify_signature",
]
