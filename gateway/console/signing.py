"""Cross-border signing in steps: who has signed, and taking in a co-issuer's signature.

The lead HDAB signs first (in the console); each co-issuing HDAB adds its signature
in its own system (``ehds permit cosign`` or any JWS tool) and sends the token back.
A co-signature is accepted only if it is over exactly the bytes the lead signed and
verifies with a key the service knows for that co-issuer: a client key with the
role ``hdab_peer`` whose organisation is the co-issuer. Only then, with every
co-issuer's signature present, is the permit issued.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import ValidationError
from gateway.keystore import KeyRing
from permits.errors import PermitError
from permits.jose import check_header, parse_jws, verify_one
from permits.signing import PERMIT_TYP

PEER_ROLE = "hdab_peer"


@dataclass(frozen=True)
class SigningState:
    signers: tuple[tuple[str, bool], ...]  # (HDAB id, has signed), lead first
    missing: tuple[str, ...]
    count: int


def _co_issuers(body: Mapping[str, Any]) -> list[str]:
    cross = body.get("cross_border") or {}
    return [str(c) for c in cross.get("co_issuers", [])]


def signing_state(token: str, body: Mapping[str, Any], lead: str, keys: KeyRing) -> SigningState:
    parsed = parse_jws(token)
    signed = {lead}  # the first signature is the lead's: the console made it
    for sig in parsed.signatures[1:]:
        entry = keys.get(str(sig.header.get("kid")))
        if entry is not None:
            signed.add(entry.org)
    order = [lead, *_co_issuers(body)]
    return SigningState(
        tuple((org, org in signed) for org in order),
        tuple(org for org in order if org not in signed),
        len(parsed.signatures),
    )


def add_cosignatures(pending: str, submitted: str, body: Mapping[str, Any], keys: KeyRing) -> str:
    """``pending`` plus each new, verified co-issuer signature found in ``submitted``."""
    try:
        have = parse_jws(pending)
        got = parse_jws(submitted.strip())
    except PermitError:
        raise ValidationError(
            "not a JWS: paste the whole token", code="COSIGNATURE_INVALID"
        ) from None
    if got.payload != have.payload:
        raise ValidationError(
            "this token signs a different permit than the one the lead signed",
            code="COSIGNATURE_INVALID",
        )
    known = {(s.protected, s.signature) for s in have.signatures}
    if not known <= {(s.protected, s.signature) for s in got.signatures}:
        raise ValidationError(
            "the lead's signature was removed or changed", code="COSIGNATURE_INVALID"
        )
    co = set(_co_issuers(body))
    already = {
        e.org for s in have.signatures[1:] if (e := keys.get(str(s.header.get("kid")))) is not None
    }
    new = []
    for sig in got.signatures:
        if (sig.protected, sig.signature) in known:
            continue
        entry = keys.get(str(sig.header.get("kid")))
        if entry is None or PEER_ROLE not in entry.roles or entry.org not in co:
            raise ValidationError(
                "a signature is from a key that is not a co-issuer's",
                code="COSIGNATURE_UNKNOWN_KEY",
            )
        if entry.org in already:
            raise ValidationError(f"{entry.org} has signed already", code="COSIGNATURE_INVALID")
        try:
            if check_header(sig.header, PERMIT_TYP) != entry.alg:
                raise ValidationError(
                    "algorithm differs from the key's", code="COSIGNATURE_INVALID"
                )
            verify_one(sig, have.payload, entry.key, entry.alg)
        except PermitError as exc:
            raise ValidationError(
                f"co-signature does not verify ({exc.code})", code="COSIGNATURE_INVALID"
            ) from None
        already.add(entry.org)
        new.append(sig)
    if not new:
        raise ValidationError("the token carries no new co-signature", code="COSIGNATURE_INVALID")
    entries = [
        {"protected": s.protected, "signature": s.signature} for s in [*have.signatures, *new]
    ]
    return orjson.dumps({"payload": have.payload_b64, "signatures": entries}).decode()


__all__ = ["PEER_ROLE", "SigningState", "add_cosignatures", "signing_state"]
