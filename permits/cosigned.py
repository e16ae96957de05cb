"""Checking a permit a co-issuing HDAB is asked to record (pure; no database).

A co-issuer lists in its own status list only permits that really carry its
signature and name it as a co-issuer; anything else would let a caller make
one HDAB vouch for (or revoke) another HDAB's permit.
"""

from __future__ import annotations

from jwcrypto import jwk

from permits.errors import HdabStateError, PermitModelError
from permits.jose import check_header, parse_jws, verify_one
from permits.keys import alg_for_key, thumbprint
from permits.model import Permit, parse_permit
from permits.signing import PERMIT_TYP


def check_cosigned(token: str, key: jwk.JWK, hdab_id: str) -> Permit:
    """The permit in ``token`` if ``key`` signed it and it names ``hdab_id`` as co-issuer."""
    parsed = parse_jws(token)
    kid = thumbprint(key)
    ours = [s for s in parsed.signatures if s.header.get("kid") == kid]
    if len(ours) != 1:
        raise HdabStateError("the permit carries no signature by this HDAB's key")
    check_header(ours[0].header, PERMIT_TYP)
    public = jwk.JWK(**key.export_public(as_dict=True))
    verify_one(ours[0], parsed.payload, public, alg_for_key(public))
    try:
        permit = parse_permit(parsed.payload)
    except PermitModelError as exc:
        raise HdabStateError(f"not a valid permit: {exc}") from None
    if permit.cross_border is None or hdab_id not in permit.cross_border.co_issuers:
        raise HdabStateError("the permit does not name this HDAB as a co-issuer")
    return permit


__all__ = ["check_cosigned"]
