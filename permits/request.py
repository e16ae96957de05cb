"""Data-user requests: proof of possession of an authorised person's key.

A permit names its authorised persons by key thumbprint (Art. 68(10)(d)). To use
it, a requester signs an :class:`RequestClaims` object with that key and sends
the public key in the protected header (``jwk``, as in DPoP, RFC 9449): the key is
trusted *only* because its RFC 7638 thumbprint is listed in the permit. The
request is bound to one data holder (``aud``), one permit version
(``permit_hash``), one operation with its parameters, a short time window and a
single-use ``nonce`` (replays are refused).

For federated XGBoost, the research server signs one request per site and round
and sends it in the Flower message config; the site's ClientApp passes it to
``PermitGuard.decide`` together with the parameters it is *about to use*, which
must equal the signed ones.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jwcrypto import jwk
from pydantic import Field, ValidationError

import trust
from permits.errors import VerificationError
from permits.model import (
    FrozenModel,
    Identifier,
    NumericDate,
    Operation,
    Sha256,
    Strategy,
)
from permits.reasons import ReasonCode
from permits.tokens import reasons
from trust import KeyUse, canonical_json, strict_json

REQUEST_HEADER = trust.jws.BASE_HEADER | {"jwk"}
"""A request carries its public key (DPoP style), trusted only via the permit's kid list."""

REQUEST_TYP = "ehds-request+jws"
MAX_REQUEST_WINDOW = 300
NONCE_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"


class AccessParams(FrozenModel):
    """What the gateway is about to do; for ``train`` every training field is required.

    ``rounds`` is the number of boosting rounds this call runs (usually 1 per
    Flower round); the guard adds it to the rounds already used under the permit.
    ``min_child_weight`` is XGBoost's minimum hessian sum per leaf: with squared
    error (hessian 1 per row) or logistic loss (hessian <= 0.25 per row) a leaf
    then holds at least ``min_child_weight`` rows, which is why the guard compares
    it with the permit's ``min_rows_per_leaf`` disclosure floor.
    """

    spec_hash: Sha256
    rounds: int = Field(default=0, ge=0, le=100_000)
    max_depth: int | None = Field(default=None, ge=0, le=64)
    min_child_weight: float | None = Field(default=None, ge=0)
    strategy: Strategy | None = None
    rows: int | None = Field(
        default=None, ge=0, description="Rows the site would train or evaluate on."
    )


class RequestClaims(FrozenModel):
    permit: Identifier = Field(description="jti of the permit used.")
    permit_hash: Sha256 = Field(description="Binds the request to one version of the permit.")
    aud: Identifier = Field(description="The data holder the request is for.")
    op: Operation
    params: AccessParams
    nonce: str = Field(pattern=NONCE_PATTERN)
    iat: NumericDate
    exp: NumericDate


@dataclass(frozen=True)
class VerifiedRequest:
    claims: RequestClaims
    kid: str


class ReplayStore(Protocol):
    def check_and_add(self, key: str, expires_at: float, now: float) -> bool:
        """True if ``key`` was unseen (and is now remembered until ``expires_at``)."""
        ...


class MemoryReplayCache:
    """Single-process replay cache; entries live until the request could no longer be accepted.

    When full of unexpired entries it refuses new requests instead of forgetting
    old ones: forgetting would re-open a replay window.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check_and_add(self, key: str, expires_at: float, now: float) -> bool:
        with self._lock:
            if key in self._seen and self._seen[key] > now:
                return False
            if len(self._seen) >= self.capacity:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
                if len(self._seen) >= self.capacity:
                    raise VerificationError(ReasonCode.INTERNAL_ERROR, "replay cache full")
            self._seen[key] = expires_at
            return True

    def __len__(self) -> int:
        return len(self._seen)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def sign_request(key: jwk.JWK | trust.SigningKey, claims: RequestClaims) -> str:
    """Compact JWS with the requester's public key in the protected header."""
    signer = trust.signing_key(key, uses={KeyUse.REQUEST})
    payload = canonical_json(claims.model_dump(mode="json", exclude_none=True))
    with reasons():
        return trust.sign_compact(
            payload, signer, REQUEST_TYP, use=KeyUse.REQUEST, extra={"jwk": signer.public.jwk}
        )


def make_request(
    key: jwk.JWK | trust.SigningKey,
    *,
    permit: str,
    permit_hash: str,
    holder: str,
    op: Operation,
    params: AccessParams | Mapping[str, Any],
    now: float | None = None,
    ttl: int = 60,
) -> str:
    """Build and sign a fresh single-use request (what a data user's client calls)."""
    issued = int(time.time() if now is None else now)
    claims = RequestClaims(
        permit=permit,
        permit_hash=permit_hash,
        aud=holder,
        op=op,
        params=params
        if isinstance(params, AccessParams)
        else AccessParams.model_validate(dict(params)),
        nonce=new_nonce(),
        iat=issued,
        exp=issued + ttl,
    )
    return sign_request(key, claims)


@functools.lru_cache(maxsize=1024)
def _key_from_json(canonical: bytes) -> trust.PublicKey:
    return trust.PublicKey.from_jwk(canonical.decode("utf-8"), uses={KeyUse.REQUEST})


def _requester_key(raw: Mapping[str, Any]) -> trust.PublicKey:
    """The request key (declared for ``request``), cached by its exact members.

    Requests from the same person repeat the same key; building a JWK and its
    thumbprint is most of a cached guard decision otherwise.
    """
    if trust.PRIVATE_MEMBERS & raw.keys():
        raise VerificationError(ReasonCode.REQUEST_MALFORMED, "request header needs a public jwk")
    try:
        return _key_from_json(canonical_json(dict(raw)))
    except Exception:
        raise VerificationError(ReasonCode.REQUEST_MALFORMED, "request jwk unusable") from None


_REMAP = {
    ReasonCode.TOKEN_MALFORMED: ReasonCode.REQUEST_MALFORMED,
    ReasonCode.KID_UNKNOWN: ReasonCode.REQUEST_MALFORMED,  # requests name no stored key
    ReasonCode.TYPE_MISMATCH: ReasonCode.REQUEST_MALFORMED,
    ReasonCode.PAYLOAD_INVALID: ReasonCode.REQUEST_MALFORMED,
    ReasonCode.SIGNATURE_INVALID: ReasonCode.REQUEST_SIGNATURE_INVALID,
}


def verify_request(
    token: str,
    *,
    allowed_kids: frozenset[str],
    holder: str,
    jti: str,
    permit_hash: str,
    now: float,
    leeway: int = 30,
    replay: ReplayStore,
) -> VerifiedRequest:
    """Verify a request token; raise with a request_* (or header policy) reason."""
    try:
        return _verify_request(token, allowed_kids, holder, jti, permit_hash, now, leeway, replay)
    except VerificationError as exc:
        if exc.reason in _REMAP:
            raise VerificationError(_REMAP[exc.reason], str(exc)) from None
        raise


def _verify_request(
    token: str,
    allowed_kids: frozenset[str],
    holder: str,
    jti: str,
    permit_hash: str,
    now: float,
    leeway: int,
    replay: ReplayStore,
) -> VerifiedRequest:
    with reasons():
        parsed = trust.parse_jws(token)
        if parsed.serialization != "compact":
            raise VerificationError(ReasonCode.REQUEST_MALFORMED, "requests are compact JWS")
        sig = parsed.signatures[0]
        alg = trust.check_header(sig.header, REQUEST_TYP, allowed=REQUEST_HEADER)
    raw_jwk = sig.header.get("jwk")
    if not isinstance(raw_jwk, dict):
        raise VerificationError(ReasonCode.REQUEST_MALFORMED, "request header needs a public jwk")
    key = _requester_key(raw_jwk)
    kid = key.kid
    if sig.header.get("kid") != kid:
        raise VerificationError(
            ReasonCode.REQUEST_MALFORMED, "request kid is not the jwk's thumbprint"
        )
    if kid not in allowed_kids:
        raise VerificationError(ReasonCode.REQUESTER_NOT_AUTHORISED, "key not bound to the permit")
    if alg != key.alg:
        raise VerificationError(ReasonCode.ALG_MISMATCH, "alg does not fit the key")
    with reasons():
        trust.verify_signature(parsed, sig, key, use=KeyUse.REQUEST)
    try:
        strict_json(parsed.payload)
        claims = RequestClaims.model_validate_json(parsed.payload, strict=True)
    except (ValueError, ValidationError):
        raise VerificationError(ReasonCode.REQUEST_MALFORMED, "request claims invalid") from None
    if claims.aud != holder:
        raise VerificationError(
            ReasonCode.REQUEST_NOT_FOR_HOLDER, "request addressed to another data holder"
        )
    if claims.permit != jti or claims.permit_hash != permit_hash:
        raise VerificationError(
            ReasonCode.REQUEST_NOT_FOR_PERMIT, "request bound to another permit"
        )
    if claims.exp <= claims.iat or claims.exp - claims.iat > MAX_REQUEST_WINDOW:
        raise VerificationError(ReasonCode.REQUEST_MALFORMED, "request window invalid")
    if claims.iat > now + leeway:
        raise VerificationError(ReasonCode.REQUEST_NOT_YET_VALID, "request issued in the future")
    if now >= claims.exp + leeway:
        raise VerificationError(ReasonCode.REQUEST_EXPIRED, "request expired")
    if not replay.check_and_add(f"{kid}:{claims.nonce}", claims.exp + leeway, now):
        raise VerificationError(ReasonCode.REQUEST_REPLAYED, "request already used")
    return VerifiedRequest(claims, kid)


__all__ = [
    "MAX_REQUEST_WINDOW",
    "REQUEST_TYP",
    "AccessParams",
    "MemoryReplayCache",
    "ReplayStore",
    "RequestClaims",
    "VerifiedRequest",
    "make_request",
    "new_nonce",
    "sign_request",
    "verify_request",
]
