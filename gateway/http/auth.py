"""Signed requests: no anonymous writes, no replays, no algorithm games.

A client proves possession of a key the service knows by sending

    Authorization: EHDS-JWS <compact JWS>

with protected header ``{"alg": "EdDSA"|"ES256", "kid": <RFC 7638 thumbprint>,
"typ": "ehds-req+jwt"}`` and payload (modelled on DPoP, RFC 9449)::

    {"htm": "POST", "htu": "/applications?x=1", "aud": "<service org>",
     "bh": "sha256:<hex of the exact body>", "iat": <unix seconds>, "jti": "<nonce>"}

The service checks, in this order and failing closed: the header shape; the
JOSE header (only the key's pinned algorithm; no ``jwk``/``jku``/``x5u``/
``x5c``/``crit``); the signature; method, path, audience and body hash; the
time window (± ``clock_skew_seconds``); and that ``(kid, jti)`` was not seen in
that window. Binding the body hash and the audience means a captured request
can be neither altered nor replayed against another service.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import orjson
from aiohttp import web
from jwcrypto import jwk

import trust
from gateway.client_keys import KeyRing
from gateway.errors import (
    AuthError,
    AuthMissingError,
    AuthReplayError,
    ForbiddenError,
    UnavailableError,
)
from trust import KeyUse

SCHEME = "EHDS-JWS"
TYP = "ehds-req+jwt"
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
MAX_TOKEN_CHARS = 8192
AUTH_CODES: dict[str, str] = {
    "TRUST_ALG_NONE": "AUTH_ALG_NOT_ALLOWED",
    "TRUST_ALG_SYMMETRIC": "AUTH_ALG_NOT_ALLOWED",
    "TRUST_ALG_NOT_ALLOWED": "AUTH_ALG_NOT_ALLOWED",
    "TRUST_EMBEDDED_KEY": "AUTH_HEADER_NOT_ALLOWED",
    "TRUST_CRIT": "AUTH_HEADER_NOT_ALLOWED",
    "TRUST_ALG_MISMATCH": "AUTH_ALG_MISMATCH",
    "TRUST_UNKNOWN_KEY": "AUTH_UNKNOWN_KEY",
    "TRUST_KID_MISSING": "AUTH_UNKNOWN_KEY",
    "TRUST_KEY_USE": "AUTH_KEY_USE",
    "TRUST_BAD_SIGNATURE": "AUTH_BAD_SIGNATURE",
}
"""trust error code -> this service's stable auth code; anything else is ``AUTH_MALFORMED``."""


@dataclass(frozen=True)
class Principal:
    """Who signed the request: their key id, organisation and roles. No names."""

    kid: str
    org: str
    roles: frozenset[str]


PRINCIPAL_KEY = web.RequestKey("ehds_principal", Principal)


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def sign_request(
    key: jwk.JWK | trust.SigningKey,
    *,
    method: str,
    path: str,
    body: bytes = b"",
    audience: str,
    now: float | None = None,
    nonce: str | None = None,
) -> str:
    """The ``Authorization`` header value for one request (client side)."""
    claims = {
        "htm": method.upper(),
        "htu": path,
        "aud": audience,
        "bh": body_hash(body),
        "iat": int(time.time() if now is None else now),
        "jti": nonce or secrets.token_urlsafe(18),
    }
    signer = trust.signing_key(key, uses={KeyUse.REQUEST})
    token = trust.sign_compact(orjson.dumps(claims), signer, TYP, use=KeyUse.REQUEST)
    return f"{SCHEME} {token}"


class ReplayCache:
    """``(kid, jti)`` pairs seen within the time window; bounded, fail closed when full.

    Entries are inserted with a constant time-to-live, so insertion order is
    expiry order and pruning from the front is enough.
    """

    def __init__(self, ttl_seconds: float, max_size: int) -> None:
        self.ttl = ttl_seconds
        self.max_size = max_size
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, kid: str, jti: str, now: float) -> None:
        while self._seen:
            first_key, expiry = next(iter(self._seen.items()))
            if expiry > now:
                break
            del self._seen[first_key]
        if (kid, jti) in self._seen:
            raise AuthReplayError("request nonce already used")
        if len(self._seen) >= self.max_size:
            raise UnavailableError(
                "replay cache full; retry shortly", code="AUTH_REPLAY_CACHE_FULL"
            )
        self._seen[(kid, jti)] = now + self.ttl


class RequestVerifier:
    """Verifies ``Authorization: EHDS-JWS`` headers against a :class:`KeyRing`."""

    def __init__(
        self,
        keys: KeyRing,
        *,
        audience: str,
        skew_seconds: int = 30,
        replay_cache_size: int = 100_000,
    ) -> None:
        self.keys = keys
        self.audience = audience
        self.skew = skew_seconds
        self.replay = ReplayCache(2 * skew_seconds + 1, replay_cache_size)

    def _lookup(self, sig: trust.JwsSignature) -> trust.PublicKey:
        entry = self.keys.get(sig.kid or "")
        if entry is None:
            raise trust.UnknownKeyError("signing key is not known to this service")
        return entry.public

    def verify(
        self,
        authorization: str | None,
        *,
        method: str,
        path: str,
        body: bytes,
        now: float | None = None,
    ) -> Principal:
        if not authorization:
            raise AuthMissingError("this request must be signed (Authorization: EHDS-JWS ...)")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme != SCHEME or not token:
            raise AuthError(f"authorization scheme must be {SCHEME}", code="AUTH_MALFORMED")
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise AuthError("signature must be one compact JWS", code="AUTH_MALFORMED")
        try:
            parsed, key = trust.verify_compact(
                token, typ=TYP, use=KeyUse.REQUEST, lookup=self._lookup, max_bytes=MAX_TOKEN_CHARS
            )
            claims = trust.strict_json(parsed.payload)
        except trust.TrustError as exc:
            code = AUTH_CODES.get(exc.code, "AUTH_MALFORMED")
            raise AuthError(f"signature refused: {exc}", code=code) from None
        entry = self.keys.get(key.kid)
        assert entry is not None  # _lookup found it
        if not isinstance(claims, dict):
            raise AuthError("signed payload is not a JSON object", code="AUTH_MALFORMED")
        if claims.get("htm") != method.upper() or claims.get("htu") != path:
            raise AuthError("signature is for another method or path", code="AUTH_MISMATCH")
        if claims.get("aud") != self.audience:
            raise AuthError("signature is for another service", code="AUTH_MISMATCH")
        if claims.get("bh") != body_hash(body):
            raise AuthError("body does not match the signed hash", code="AUTH_MISMATCH")
        iat = claims.get("iat")
        current = time.time() if now is None else now
        if not isinstance(iat, int) or isinstance(iat, bool) or abs(current - iat) > self.skew:
            raise AuthError("signature is outside the accepted time window", code="AUTH_EXPIRED")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not NONCE_PATTERN.match(jti):
            raise AuthError(
                "signature needs a nonce (jti) of 16-128 base64url characters",
                code="AUTH_MALFORMED",
            )
        self.replay.check_and_add(entry.kid, jti, current)
        return Principal(kid=entry.kid, org=entry.org, roles=entry.roles)


def require_role(principal: Principal, roles: frozenset[str]) -> None:
    if roles and not (principal.roles & roles):
        raise ForbiddenError(f"this route needs one of the roles: {', '.join(sorted(roles))}")


__all__ = [
    "PRINCIPAL_KEY",
    "SCHEME",
    "TYP",
    "Principal",
    "ReplayCache",
    "RequestVerifier",
    "body_hash",
    "require_role",
    "sign_request",
]
