"""Signing permits: compact JWS for one HDAB, JWS JSON (general) for co-issued permits.

The signed payload is the permit's canonical JSON (RFC 8785),
so its hash (``permit_hash``) is the same whatever the serialization and however
many signatures a cross-border permit carries.
"""

from __future__ import annotations

from collections.abc import Sequence

from jwcrypto import jwk

import trust
from permits.errors import PermitError
from permits.model import Permit
from permits.tokens import hdab_signing_keys, reasons, sign_compact, sign_general
from trust import KeyUse

PERMIT_TYP = "ehds-permit+jws"


def sign_permit(permit: Permit, keys: Sequence[jwk.JWK | trust.SigningKey]) -> str:
    """Sign with one key per issuing HDAB, lead first.

    A national permit signed by one key is a compact JWS; a cross-border permit
    (or any permit with several signers) is a JWS JSON general serialization.
    """
    if not keys:
        raise PermitError("a permit needs at least one HDAB signature")
    payload = permit.payload()
    if len(keys) == 1 and permit.cross_border is None:
        return sign_compact(payload, keys[0], PERMIT_TYP, KeyUse.PERMIT)
    return sign_general(payload, keys, PERMIT_TYP, KeyUse.PERMIT)


def cosign_permit(token: str, key: jwk.JWK | trust.SigningKey) -> str:
    """Add a co-issuing HDAB's signature to a permit another HDAB signed first."""
    (signer,) = hdab_signing_keys([key], KeyUse.PERMIT)
    with reasons():
        return trust.add_signature(token, signer, PERMIT_TYP, use=KeyUse.PERMIT)


__all__ = ["PERMIT_TYP", "cosign_permit", "sign_permit"]
