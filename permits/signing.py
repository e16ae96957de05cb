"""Signing permits: compact JWS for one HDAB, JWS JSON (general) for co-issued permits.

The signed payload is the permit's canonical JSON (sorted keys, no whitespace),
so its hash (``permit_hash``) is the same whatever the serialization and however
many signatures a cross-border permit carries.
"""

from __future__ import annotations

from collections.abc import Sequence

from jwcrypto import jwk

from permits.errors import PermitError
from permits.jose import add_signature, sign_compact, sign_general
from permits.model import Permit

PERMIT_TYP = "ehds-permit+jws"


def sign_permit(permit: Permit, keys: Sequence[jwk.JWK]) -> str:
    """Sign with one key per issuing HDAB, lead first.

    A national permit signed by one key is a compact JWS; a cross-border permit
    (or any permit with several signers) is a JWS JSON general serialization.
    """
    if not keys:
        raise PermitError("a permit needs at least one HDAB signature")
    payload = permit.payload()
    if len(keys) == 1 and permit.cross_border is None:
        return sign_compact(payload, keys[0], PERMIT_TYP)
    return sign_general(payload, keys, PERMIT_TYP)


def cosign_permit(token: str, key: jwk.JWK) -> str:
    """Add a co-issuing HDAB's signature to a permit another HDAB signed first."""
    return add_signature(token, key, PERMIT_TYP)


__all__ = ["PERMIT_TYP", "cosign_permit", "sign_permit"]
