"""Checking a permit a co-issuing HDAB is asked to record (pure; no database).

A co-issuer lists in its own status list only permits that really carry its
signature and name it as a co-issuer; anything else would let a caller make
one HDAB vouch for (or revoke) another HDAB's permit.
"""

from __future__ import annotations

from jwcrypto import jwk

import trust
from permits.errors import HdabStateError, PermitModelError, VerificationError
from permits.model import Permit, parse_permit
from permits.signing import PERMIT_TYP
from permits.tokens import reasons
from trust import KeyUse


def check_cosigned(token: str, key: jwk.JWK, hdab_id: str) -> Permit:
    """The permit in ``token`` if ``key`` signed it and it names ``hdab_id`` as co-issuer."""
    public = trust.PublicKey.from_jwk(key, uses={KeyUse.PERMIT})
    try:
        with reasons():
            parsed = trust.parse_jws(token)
            ours = [s for s in parsed.signatures if s.kid == public.kid]
            if len(ours) != 1:
                raise HdabStateError("the permit carries no signature by this HDAB's key")
            trust.check_header(ours[0].header, PERMIT_TYP)
            trust.verify_signature(parsed, ours[0], public, use=KeyUse.PERMIT)
    except VerificationError as exc:
        raise HdabStateError(f"the permit's signature by this HDAB fails: {exc.reason}") from None
    try:
        permit = parse_permit(parsed.payload)
    except PermitModelError as exc:
        raise HdabStateError(f"not a valid permit: {exc}") from None
    if permit.cross_border is None or hdab_id not in permit.cross_border.co_issuers:
        raise HdabStateError("the permit does not name this HDAB as a co-issuer")
    return permit


__all__ = ["check_cosigned"]
