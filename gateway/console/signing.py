"""Cross-border signing in steps: who has signed, and taking in a co-issuer's signature.

The lead HDAB signs first (in the console); each co-issuing HDAB adds its signature
in its own system (``ehds permit cosign``) and sends the token back. A co-signature
is accepted only if it is over exactly the bytes the lead signed and verifies with a
``permit`` key of that co-issuer in the console's peer trust list
(``[hdab.console] peer_keys``, the trust-list format data holders use). Only with
every co-issuer's signature present is the permit issued.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

import trust
from gateway.errors import ValidationError
from permits.signing import PERMIT_TYP
from permits.trust_list import TrustList
from trust import KeyUse


@dataclass(frozen=True)
class SigningState:
    signers: tuple[tuple[str, bool], ...]  # (HDAB id, has signed), lead first
    missing: tuple[str, ...]
    count: int


def _co_issuers(body: Mapping[str, Any]) -> list[str]:
    cross = body.get("cross_border") or {}
    return [str(c) for c in cross.get("co_issuers", [])]


def _signer(peers: TrustList, sig: trust.JwsSignature) -> str | None:
    entry = peers.get(sig.kid or "")
    return entry.hdab if entry is not None else None


def signing_state(token: str, body: Mapping[str, Any], lead: str, peers: TrustList) -> SigningState:
    parsed = trust.parse_jws(token)
    signed = {lead}  # the first signature is the lead's: the console made it
    signed.update(org for s in parsed.signatures[1:] if (org := _signer(peers, s)) is not None)
    order = [lead, *_co_issuers(body)]
    return SigningState(
        tuple((org, org in signed) for org in order),
        tuple(org for org in order if org not in signed),
        len(parsed.signatures),
    )


def add_cosignatures(
    pending: str, submitted: str, body: Mapping[str, Any], peers: TrustList
) -> str:
    """``pending`` plus each new, verified co-issuer signature found in ``submitted``."""
    try:
        have = trust.parse_jws(pending)
        got = trust.parse_jws(submitted.strip())
    except trust.TrustError:
        raise ValidationError(
            "not a JWS: paste the whole token", code="COSIGNATURE_INVALID"
        ) from None
    if got.payload != have.payload:
        raise ValidationError(
            "this token signs a different permit than the one the lead signed",
            code="COSIGNATURE_INVALID",
        )
    known = {(s.protected, s.signature_b64) for s in have.signatures}
    if not known <= {(s.protected, s.signature_b64) for s in got.signatures}:
        raise ValidationError(
            "the lead's signature was removed or changed", code="COSIGNATURE_INVALID"
        )
    co = set(_co_issuers(body))
    already = {org for s in have.signatures[1:] if (org := _signer(peers, s)) is not None}
    new = []
    for sig in got.signatures:
        if (sig.protected, sig.signature_b64) in known:
            continue
        entry = peers.get(sig.kid or "")
        if entry is None or entry.hdab not in co:
            raise ValidationError(
                "a signature is from a key that is not a co-issuer's",
                code="COSIGNATURE_UNKNOWN_KEY",
            )
        if entry.hdab in already:
            raise ValidationError(f"{entry.hdab} has signed already", code="COSIGNATURE_INVALID")
        try:
            trust.check_header(sig.header, PERMIT_TYP)
            trust.verify_signature(got, sig, entry.public, use=KeyUse.PERMIT)
        except trust.TrustError as exc:
            raise ValidationError(
                f"co-signature does not verify ({exc.code})", code="COSIGNATURE_INVALID"
            ) from None
        already.add(entry.hdab)
        new.append(sig)
    if not new:
        raise ValidationError("the token carries no new co-signature", code="COSIGNATURE_INVALID")
    entries = [
        {"protected": s.protected, "signature": s.signature_b64} for s in [*have.signatures, *new]
    ]
    return orjson.dumps({"payload": have.payload_b64, "signatures": entries}).decode()


__all__ = ["SigningState", "add_cosignatures", "signing_state"]
