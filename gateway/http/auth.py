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

import base64
import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from gateway.errors import (
    AuthError,
    AuthMissingError,
    AuthReplayError,
    ForbiddenError,
    UnavailableError,
)
from gateway.keystore import ALLOWED_ALGS, KeyRing, alg_for, thumbprint

SCHEME = "EHDS-JWS"
TYP = "ehds-req+jwt"
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
FORBIDDEN_HEADERS: frozenset[str] = frozenset(
    {"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"}
)
MAX_TOKEN_CHARS = 8192


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
    key: jwk.JWK,
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
    token = jws.JWS(orjson.dumps(claims))
    token.add_signature(
        key,
        alg=alg_for(key),
        protected=orjson.dumps({"alg": alg_for(key), "kid": thumbprint(key), "typ": TYP}).decode(),
    )
    return f"{SCHEME} {token.serialize(compact=True)}"


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


def _b64json(part: str) -> Mapping[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        raise AuthError(
            "signature header is not valid base64url JSON", code="AUTH_MALFORMED"
        ) from None
    if not isinstance(value, dict):
        raise AuthError("signature header is not a JSON object", code="AUTH_MALFORMED")
    return value


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
        header = _b64json(token.split(".", 1)[0])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
            raise AuthError("signature algorithm not allowed", code="AUTH_ALG_NOT_ALLOWED")
        if FORBIDDEN_HEADERS & set(header):
            raise AuthError(
                "embedded keys and critical headers are not accepted",
                code="AUTH_HEADER_NOT_ALLOWED",
            )
        if header.get("typ") != TYP:
            raise AuthError(f"signature typ must be {TYP}", code="AUTH_MALFORMED")
        kid = header.get("kid")
        entry = self.keys.get(kid) if isinstance(kid, str) else None
        if entry is None:
            raise AuthError("signing key is not known to this service", code="AUTH_UNKNOWN_KEY")
        if alg != entry.alg:
            raise AuthError(
                "algorithm does not match the key's pinned algorithm", code="AUTH_ALG_MISMATCH"
            )
        parsed = jws.JWS()
        try:
            parsed.deserialize(token)
            parsed.verify(entry.key, alg=entry.alg)
        except (JWException, ValueError, TypeError):
            raise AuthError("signature does not verify", code="AUTH_BAD_SIGNATURE") from None
        try:
            claims = orjson.loads(parsed.payload)
        except orjson.JSONDecodeError:
            raise AuthError("signed payload is not JSON", code="AUTH_MALFORMED") from None
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
