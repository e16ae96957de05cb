"""Pinning HDAB keys from a signed JWKS: continuity by signature, narrowing only."""

from __future__ import annotations

import pytest

import trust
from gateway.key_sync import JWKS_TYP, merge_jwks
from permits import TrustList, generate_key, trusted_key
from permits.errors import VerificationError
from permits.reasons import ReasonCode
from trust import KeyUse


def _entry(key: trust.SigningKey, uses: list[str], start: int, until: int | None) -> dict:
    return {
        **key.public.jwk,
        "kid": key.kid,
        "alg": key.alg,
        "ehds_uses": uses,
        "ehds_valid_from": start,
        "ehds_valid_until": until,
    }


def _jwks(signers: list[trust.SigningKey], keys: list[dict], hdab: str = "hdab-fi") -> str:
    doc = {"hdab": hdab, "country": "FI", "keys": keys}
    return trust.sign_general(trust.canonical_json(doc), signers, JWKS_TYP, use=KeyUse.PERMIT)


def test_a_rotation_signed_by_the_pinned_key_is_followed() -> None:
    old = trust.SigningKey(generate_key(), uses={KeyUse.PERMIT})
    new = trust.SigningKey(generate_key(), uses={KeyUse.PERMIT})
    status = trust.SigningKey(generate_key(), uses={KeyUse.STATUS})
    pinned = TrustList([trusted_key(old.jwk, "hdab-fi", "FI", uses={"permit"})])
    token = _jwks(
        [new, old],
        [_entry(old, ["permit"], 0, 1000), _entry(new, ["permit"], 1000, None),
         _entry(status, ["status"], 0, None)],
    )  # fmt: skip
    merged = merge_jwks(pinned, "hdab-fi", token)
    assert merged.get(old.kid).valid_until == 1000  # type: ignore[union-attr]  # retired
    assert merged.get(new.kid) is not None
    assert {u.value for u in merged.get(status.kid).public.uses} == {"status"}  # type: ignore[union-attr]
    # a later document cannot widen the retired key's window again
    again = merge_jwks(merged, "hdab-fi", _jwks([new], [_entry(old, ["permit"], 0, None)]))
    assert again.get(old.kid).valid_until == 1000  # type: ignore[union-attr]


def test_a_jwks_signed_by_an_unknown_key_changes_nothing() -> None:
    old = trust.SigningKey(generate_key(), uses={KeyUse.PERMIT})
    thief = trust.SigningKey(generate_key(), uses={KeyUse.PERMIT})
    pinned = TrustList([trusted_key(old.jwk, "hdab-fi", "FI", uses={"permit"})])
    with pytest.raises(VerificationError) as exc:
        merge_jwks(pinned, "hdab-fi", _jwks([thief], [_entry(thief, ["permit"], 0, None)]))
    assert exc.value.reason is ReasonCode.KID_UNKNOWN
    with pytest.raises(VerificationError):  # pinned key, but claiming to be another HDAB
        merge_jwks(pinned, "hdab-se", _jwks([old], [], hdab="hdab-se"))
