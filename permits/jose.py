"""Strict JWS parsing and per-signature verification, shared by permits, status lists and requests.

jwcrypto is used for the cryptography only (``JWSCore``: one algorithm, one key,
one signature). Everything a token could use to steer verification is decided
here first, from our configuration rather than from the token:

* the algorithm comes from the trust entry (``alg`` in the header must equal it);
* ``none``, ``HS*``, keys embedded or referenced in the header (``jwk``, ``jku``,
  ``x5u``, ``x5c``, ``x5t``, ``x5t#S256``) and any ``crit`` are refused;
* unprotected headers are refused (nothing unsigned may influence the result);
* base64url must be canonical and JSON must have no duplicate members, so the
  bytes we verify are the bytes every other parser sees;
* in a JWS JSON serialization with several signatures, *every* signature is
  verified; jwcrypto's ``JWS.verify()`` would accept the token if any one did.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from jwcrypto import jwk
from jwcrypto.jws import JWSCore

from permits.errors import PermitError, VerificationError
from permits.keys import ALLOWED_ALGS, alg_for_key, thumbprint
from permits.model import canonical_json, strict_json
from permits.reasons import ReasonCode

MAX_TOKEN_BYTES = 256 * 1024
EMBEDDED_KEY_PARAMS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"})
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url without padding, refusing any non-canonical form."""
    if not isinstance(text, str) or not _B64URL.match(text) or len(text) % 4 == 1:
        raise VerificationError(ReasonCode.TOKEN_MALFORMED, "invalid base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(data) != text:
        raise VerificationError(ReasonCode.TOKEN_MALFORMED, "non-canonical base64url")
    return data


# ------------------------------------------------------------------------------- signing
def sign_core(payload: bytes, key: jwk.JWK, header: Mapping[str, Any]) -> tuple[str, str]:
    """(protected, signature) for ``payload``; alg and kid always come from the key."""
    alg = alg_for_key(key)
    full = {**header, "alg": alg, "kid": thumbprint(key)}
    protected_json = canonical_json(full).decode("utf-8")
    core = JWSCore(alg, key, protected_json, payload)
    signed = core.sign()
    return str(signed["protected"]), str(signed["signature"])


def sign_compact(
    payload: bytes, key: jwk.JWK, typ: str, extra: Mapping[str, Any] | None = None
) -> str:
    protected, signature = sign_core(payload, key, {"typ": typ, **(extra or {})})
    return f"{protected}.{b64url_encode(payload)}.{signature}"


def sign_general(payload: bytes, keys: Sequence[jwk.JWK], typ: str) -> str:
    """JWS JSON general serialization with one signature per key."""
    if not keys:
        raise PermitError("at least one signing key is required")
    signatures = []
    for key in keys:
        protected, signature = sign_core(payload, key, {"typ": typ})
        signatures.append({"protected": protected, "signature": signature})
    return orjson.dumps({"payload": b64url_encode(payload), "signatures": signatures}).decode()


def add_signature(token: str, key: jwk.JWK, typ: str) -> str:
    """Append a co-issuer's signature to a JWS (compact input becomes general JSON)."""
    parsed = parse_jws(token)
    kid = thumbprint(key)
    if any(s.header.get("kid") == kid for s in parsed.signatures):
        raise PermitError("this key has already signed the token")
    protected, signature = sign_core(parsed.payload, key, {"typ": typ})
    entries = [{"protected": s.protected, "signature": s.signature} for s in parsed.signatures]
    entries.append({"protected": protected, "signature": signature})
    return orjson.dumps({"payload": parsed.payload_b64, "signatures": entries}).decode()


# ------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class ParsedSignature:
    header: dict[str, Any]
    header_json: str
    protected: str
    signature: str
    signature_bytes: bytes


@dataclass(frozen=True)
class ParsedJws:
    payload_b64: str
    payload: bytes
    signatures: tuple[ParsedSignature, ...]
    serialization: Literal["compact", "json"]


def _parse_signature(protected: object, signature: object) -> ParsedSignature:
    if not isinstance(protected, str) or not isinstance(signature, str) or not protected:
        raise VerificationError(ReasonCode.TOKEN_MALFORMED, "signature entry incomplete")
    raw = b64url_decode(protected)
    try:
        header_json = raw.decode("utf-8")
        header = strict_json(header_json)
    except ValueError:
        raise VerificationError(
            ReasonCode.TOKEN_MALFORMED, "protected header is not JSON"
        ) from None
    if not isinstance(header, dict):
        raise VerificationError(ReasonCode.TOKEN_MALFORMED, "protected header is not an object")
    return ParsedSignature(header, header_json, protected, signature, b64url_decode(signature))


def parse_jws(token: str | bytes) -> ParsedJws:
    """Split a compact or JSON-serialized JWS without trusting any of it."""
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii" if not token.lstrip().startswith(b"{") else "utf-8")
        except UnicodeDecodeError:
            raise VerificationError(ReasonCode.TOKEN_MALFORMED, "token is not text") from None
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise VerificationError(ReasonCode.TOKEN_MALFORMED, "token empty or too large")
    if not token.startswith("{"):
        parts = token.split(".")
        if len(parts) != 3:
            raise VerificationError(ReasonCode.TOKEN_MALFORMED, "compact JWS needs three parts")
        sig = _parse_signature(parts[0], parts[2])
        return ParsedJws(parts[1], b64url_decode(parts[1]), (sig,), "compact")
    try:
        doc = strict_json(token)
    except ValueError:
        raise VerificationError(ReasonCode.TOKEN_MALFORMED, "JWS JSON is not valid JSON") from None
    if not isinstance(doc, dict):
        raise VerificationError(ReasonCode.TOKEN_MALFORMED, "JWS JSON is not an object")
    if "header" in doc or any(
        isinstance(s, dict) and "header" in s for s in doc.get("signatures") or []
    ):
        raise VerificationError(
            ReasonCode.UNPROTECTED_HEADER, "unprotected headers are not accepted"
        )
    payload_b64 = doc.get("payload")
    if not isinstance(payload_b64, str):
        raise VerificationError(
            ReasonCode.TOKEN_MALFORMED, "payload missing (detached payloads not accepted)"
        )
    if "signatures" in doc:
        if set(doc) != {"payload", "signatures"}:
            raise VerificationError(ReasonCode.TOKEN_MALFORMED, "unexpected members in JWS JSON")
        entries = doc["signatures"]
        if not isinstance(entries, list) or not entries or len(entries) > 16:
            raise VerificationError(
                ReasonCode.TOKEN_MALFORMED, "signatures must be a list of 1-16 entries"
            )
        sigs = []
        for entry in entries:
            if not isinstance(entry, dict) or set(entry) != {"protected", "signature"}:
                raise VerificationError(ReasonCode.TOKEN_MALFORMED, "bad signature entry")
            sigs.append(_parse_signature(entry["protected"], entry["signature"]))
    else:
        if set(doc) != {"payload", "protected", "signature"}:
            raise VerificationError(
                ReasonCode.TOKEN_MALFORMED, "unexpected members in flattened JWS JSON"
            )
        sigs = [_parse_signature(doc["protected"], doc["signature"])]
    return ParsedJws(payload_b64, b64url_decode(payload_b64), tuple(sigs), "json")


# ------------------------------------------------------------------------------- checks
_ALLOWED_HEADER_PARAMS = frozenset({"alg", "kid", "typ"})


def check_header(header: Mapping[str, Any], typ: str, *, allow_jwk: bool = False) -> str:
    """Refuse every header a token could use to choose its own verification; return alg.

    ``allow_jwk`` is only for data-user requests, whose key is trusted through
    its thumbprint being listed in the permit (never for HDAB-signed objects).
    """
    embedded = EMBEDDED_KEY_PARAMS - {"jwk"} if allow_jwk else EMBEDDED_KEY_PARAMS
    allow = _ALLOWED_HEADER_PARAMS | {"jwk"} if allow_jwk else _ALLOWED_HEADER_PARAMS
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise VerificationError(ReasonCode.TOKEN_MALFORMED, "alg missing")
    if alg.lower() == "none":
        raise VerificationError(ReasonCode.ALG_NONE, "alg 'none' is never accepted")
    if alg.upper().startswith("HS"):
        raise VerificationError(ReasonCode.ALG_SYMMETRIC, "symmetric algorithms are never accepted")
    if embedded & header.keys():
        raise VerificationError(
            ReasonCode.EMBEDDED_KEY, "keys embedded or referenced in the header are refused"
        )
    if "crit" in header:
        raise VerificationError(
            ReasonCode.CRIT_UNSUPPORTED, "no critical header extension is supported"
        )
    if alg not in ALLOWED_ALGS:
        raise VerificationError(ReasonCode.ALG_NOT_ALLOWED, f"algorithm {alg} is not allowed")
    if set(header) - allow:
        raise VerificationError(ReasonCode.TOKEN_MALFORMED, "unexpected header parameter")
    if header.get("typ") != typ:
        raise VerificationError(ReasonCode.TYPE_MISMATCH, f"typ must be {typ}")
    return alg


def verify_one(sig: ParsedSignature, payload: bytes, key: jwk.JWK, alg: str) -> None:
    """Verify exactly one signature with exactly one key and the pinned algorithm."""
    try:
        JWSCore(alg, key, sig.header_json, payload, algs=[alg]).verify(sig.signature_bytes)
    except Exception:
        raise VerificationError(ReasonCode.SIGNATURE_INVALID, "signature does not verify") from None


KeyLookup = Callable[[ParsedSignature], tuple[jwk.JWK, str]]


def verify_all(parsed: ParsedJws, typ: str, lookup: KeyLookup) -> list[ParsedSignature]:
    """Check every header, then verify every signature; one failure fails the token."""
    kids: set[str] = set()
    for sig in parsed.signatures:
        check_header(sig.header, typ)
        kid = sig.header.get("kid")
        if not isinstance(kid, str) or kid in kids:
            raise VerificationError(
                ReasonCode.KID_UNKNOWN if not isinstance(kid, str) else ReasonCode.TOKEN_MALFORMED,
                "kid missing or repeated",
            )
        kids.add(kid)
    for sig in parsed.signatures:
        key, alg = lookup(sig)
        verify_one(sig, parsed.payload, key, alg)
    return list(parsed.signatures)


__all__ = [
    "EMBEDDED_KEY_PARAMS",
    "ParsedJws",
    "ParsedSignature",
    "add_signature",
    "b64url_decode",
    "b64url_encode",
    "check_header",
    "parse_jws",
    "sign_compact",
    "sign_core",
    "sign_general",
    "verify_all",
    "verify_one",
]
