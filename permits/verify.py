"""Strict permit verification against a configured trust list.

Split in two so the guard can cache the expensive part:

* :meth:`PermitVerifier.verify_signatures` - parse, header policy, every
  signature, signer set (lead + every co-issuer), payload model. Depends only on
  the token bytes and the trust list, so its result is cacheable.
* :meth:`PermitVerifier.check_current` - key windows/compromise and the permit's
  own validity window with an explicit leeway (default 30 s; jwcrypto's JWT
  default is 60 s). Cheap, re-run on every decision.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from permits.errors import PermitModelError, VerificationError
from permits.model import Permit, parse_permit
from permits.reasons import ReasonCode
from permits.signing import PERMIT_TYP
from permits.tokens import verify_hdab_token
from permits.trust_list import TrustedKey, TrustList
from trust import KeyUse, sha256_tag

DEFAULT_LEEWAY = 30
Clock = Callable[[], float]


@dataclass(frozen=True)
class VerifiedPermit:
    """A permit whose signatures all verified; still subject to time and status checks."""

    permit: Permit
    permit_hash: str
    token_hash: str
    signers: tuple[TrustedKey, ...]
    serialization: Literal["compact", "json"]


def token_hash(token: str | bytes) -> str:
    data = token.encode("utf-8") if isinstance(token, str) else token
    return "sha256:" + hashlib.sha256(data.strip()).hexdigest()


class PermitVerifier:
    def __init__(
        self, trust: TrustList, *, leeway: int = DEFAULT_LEEWAY, clock: Clock = time.time
    ) -> None:
        if not 0 <= leeway <= 300:
            raise ValueError("leeway must be between 0 and 300 seconds")
        self.trust = trust
        self.leeway = leeway
        self.clock = clock

    def verify_signatures(self, token: str | bytes) -> VerifiedPermit:
        """Everything that depends only on the token and the trust list."""
        parsed, signers = verify_hdab_token(token, self.trust, typ=PERMIT_TYP, use=KeyUse.PERMIT)
        try:
            permit = parse_permit(parsed.payload)
        except PermitModelError as exc:
            raise VerificationError(ReasonCode.PAYLOAD_INVALID, str(exc)) from None
        required = permit.required_issuers()
        signed_by = {s.hdab for s in signers}
        if signed_by - required:
            raise VerificationError(
                ReasonCode.SIGNER_UNEXPECTED, "signed by an HDAB the permit does not name"
            )
        if required - signed_by:
            raise VerificationError(
                ReasonCode.COSIGNATURE_MISSING, "a required HDAB signature is missing"
            )
        if any(s.hdab == permit.iss.id and s.country != permit.iss.country for s in signers):
            raise VerificationError(
                ReasonCode.SIGNER_UNEXPECTED, "issuer country differs from the trust list"
            )
        return VerifiedPermit(
            permit=permit,
            permit_hash=sha256_tag(parsed.payload),
            token_hash=token_hash(token),
            signers=signers,
            serialization=parsed.serialization,
        )

    def check_current(self, verified: VerifiedPermit, now: float | None = None) -> None:
        """Key windows against the *current* trust list, then the permit's validity window."""
        now = self.clock() if now is None else now
        permit = verified.permit
        for signer in verified.signers:
            current = self.trust.get(signer.kid)
            if current is None:
                raise VerificationError(
                    ReasonCode.KID_UNKNOWN, "signing key removed from the trust list"
                )
            current.check_signed_at(permit.iat)
        if permit.iat > now + self.leeway or permit.nbf > now + self.leeway:
            raise VerificationError(ReasonCode.PERMIT_NOT_YET_VALID, "permit not yet valid")
        if now >= permit.exp + self.leeway:
            raise VerificationError(ReasonCode.PERMIT_EXPIRED, "permit expired")

    def verify(self, token: str | bytes, now: float | None = None) -> VerifiedPermit:
        verified = self.verify_signatures(token)
        self.check_current(verified, now)
        return verified


__all__ = ["DEFAULT_LEEWAY", "PermitVerifier", "VerifiedPermit", "token_hash"]
