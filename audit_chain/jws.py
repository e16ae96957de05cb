"""Compact JWS (RFC 7515) for events and checkpoints, signed and verified with pinned keys.

Why not build every token through ``jwcrypto.jws.JWS``: its object round trip
costs ~4x the raw signature on this hardware and the log must sign thousands
of events per second. The keys are jwcrypto JWKs and the output is the
standard compact serialization (tests check jwcrypto accepts it and that we
accept jwcrypto's). Verification is deliberately narrower than general JWS:

* the protected header holds exactly ``alg``, ``kid`` and ``typ`` (no ``jwk``,
  ``jku``, ``x5u`` or ``crit``: keys come only from the trust store);
* ``alg`` must equal the algorithm pinned for ``kid`` (no algorithm confusion);
* base64url must be canonical (no padding, no stray bits) so one event has
  exactly one byte representation, which matters because leaves are bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from audit_chain.errors import AuditSignatureError

if TYPE_CHECKING:
    from audit_chain.keys import TrustedKey, TrustStore

HEADER_KEYS = frozenset({"alg", "kid", "typ"})
_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_B64_VALUE = {
    c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}
MAX_TOKEN_BYTES = 16_384  # events are small; anything larger is refused before parsing


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Strict, canonical base64url without padding."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    if not _B64URL.fullmatch(raw) or len(raw) % 4 == 1:
        raise AuditSignatureError("malformed base64url")
    try:
        out = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AuditSignatureError("malformed base64url") from exc
    # canonical: the unused low bits of the last character must be zero
    tail = len(raw) % 4
    if tail and _B64_VALUE[raw[-1]] & (0x0F if tail == 2 else 0x03):
        raise AuditSignatureError("non-canonical base64url")
    return out


def encode_header(alg: str, kid: str, typ: str) -> str:
    return b64url_encode(orjson.dumps({"alg": alg, "kid": kid, "typ": typ}))


@dataclass(frozen=True)
class Compact:
    """A parsed (not yet verified) compact JWS."""

    token: str
    header: dict[str, str]
    payload: bytes
    signing_input: bytes
    signature: bytes


def parse_compact(token: str | bytes) -> Compact:
    """Split and decode a compact JWS; checks shape and header, not the signature."""
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuditSignatureError("JWS is not ASCII") from exc
    if len(token) > MAX_TOKEN_BYTES:
        raise AuditSignatureError(f"JWS longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise AuditSignatureError("not a compact JWS (three non-empty parts)")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
    except orjson.JSONDecodeError as exc:
        raise AuditSignatureError("JWS header is not JSON") from exc
    if not isinstance(header, dict) or set(header) != HEADER_KEYS:
        raise AuditSignatureError("JWS header must hold exactly alg, kid and typ")
    if not all(isinstance(v, str) for v in header.values()):
        raise AuditSignatureError("JWS header values must be strings")
    return Compact(
        token=token,
        header=header,
        payload=b64url_decode(parts[1]),
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=b64url_decode(parts[2]),
    )


def verify_compact(token: str | bytes, trust: TrustStore, typ: str) -> tuple[Compact, TrustedKey]:
    """Parse and verify a compact JWS of the given ``typ`` against the trust store."""
    parsed = parse_compact(token)
    if parsed.header["typ"] != typ:
        raise AuditSignatureError(f"JWS typ is not {typ}")
    key = trust.get(parsed.header["kid"])
    key.verify(parsed.header["alg"], parsed.signing_input, parsed.signature)
    return parsed, key


__all__ = [
    "HEADER_KEYS",
    "Compact",
    "b64url_decode",
    "b64url_encode",
    "encode_header",
    "parse_compact",
    "verify_compact",
]
