"""HDAB keys fetched from the issuer URL and pinned: a gateway follows key rotations safely.

The hospital's configured trust list is the anchor (the keys it was given out
of band). From each configured HDAB URL the gateway fetches
``/.well-known/jwks.jws``: the HDAB's key set signed by its current permit key
and the one that key replaced. It is accepted only if at least one signature is
by a key this gateway already trusts for that HDAB (use ``permit``) and every
signature by a known key verifies. Then:

* keys not yet known are pinned with the use and signing window the HDAB
  declares (a new permit key after a rotation, the separate status key);
* keys already pinned can only be narrowed: a ``valid_until`` (retirement) or
  an earlier one is taken over, a window is never widened and a use never added.

So a rotation needs no manual step at the hospital, yet a document signed by an
unknown key (a hijacked URL) changes nothing. The pinned list is written to
``<data_dir>/trust_list.pinned.json`` for the site's ClientApp guard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson

import trust
from permits import TrustedKey, TrustList, trusted_key
from permits.errors import VerificationError
from permits.reasons import ReasonCode
from permits.tokens import reasons
from trust import KeyUse

LOG = logging.getLogger("ehds.status")
JWKS_TYP = "ehds-jwks+jws"


def merge_jwks(pinned: TrustList, hdab: str, token: str) -> TrustList:
    """The pinned list updated from an HDAB's signed JWKS (pure; raises on refusal)."""
    with reasons():
        parsed = trust.parse_jws(token)
        verified = 0
        for sig in parsed.signatures:
            trust.check_header(sig.header, JWKS_TYP)
            known = pinned.get(sig.kid or "")
            if known is None:
                continue  # a new key may co-sign; it proves nothing yet
            if known.hdab != hdab:
                raise VerificationError(ReasonCode.SIGNER_UNEXPECTED, "JWKS signed by another HDAB")
            trust.verify_signature(parsed, sig, known.public, use=KeyUse.PERMIT)
            verified += 1
    if verified == 0:
        raise VerificationError(ReasonCode.KID_UNKNOWN, "JWKS not signed by a pinned key")
    doc = trust.strict_json(parsed.payload)
    if (
        not isinstance(doc, dict)
        or doc.get("hdab") != hdab
        or not isinstance(doc.get("keys"), list)
    ):
        raise VerificationError(ReasonCode.PAYLOAD_INVALID, "JWKS is not this HDAB's key set")
    country = str(doc.get("country", ""))
    out = pinned
    for item in doc["keys"]:
        out = _merge_key(out, hdab, country, item)
    return out


def _merge_key(pinned: TrustList, hdab: str, country: str, item: Any) -> TrustList:
    if not isinstance(item, dict) or not isinstance(item.get("ehds_uses"), list):
        return pinned  # not an HDAB signing key entry (e.g. the audit key): not pinned here
    uses = {u for u in item["ehds_uses"] if u in (KeyUse.PERMIT.value, KeyUse.STATUS.value)}
    if not uses:
        return pinned
    jwk_doc = {k: v for k, v in item.items() if not k.startswith("ehds_") and k != "use"}
    until = item.get("ehds_valid_until")
    until = until if isinstance(until, int) and not isinstance(until, bool) else None
    start = item.get("ehds_valid_from")
    start = start if isinstance(start, int) and not isinstance(start, bool) else 0
    known = pinned.get(str(item.get("kid")))
    if known is None:
        entry: TrustedKey = trusted_key(
            jwk_doc, hdab, country, valid_from=start, valid_until=until, uses=uses
        )
        return pinned.with_key(entry)
    if known.hdab != hdab or until is None:
        return pinned
    if known.valid_until is None or until < known.valid_until:  # narrow only
        return pinned.with_key(replace(known, valid_until=until))
    return pinned


@dataclass
class KeySync:
    """Fetches each HDAB's signed JWKS and keeps the pinned trust list current."""

    pinned: TrustList
    issuers: Mapping[str, str]
    out: Path
    on_change: list[Callable[[TrustList], None]] = field(default_factory=list)
    failures: int = 0
    last_error: str | None = None

    async def fetch(self, session: aiohttp.ClientSession, hdab: str) -> bool:
        url = self.issuers[hdab].rstrip("/") + "/.well-known/jwks.jws"
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    raise VerificationError(ReasonCode.KID_UNKNOWN, f"http {resp.status}")
                body = orjson.loads(await resp.read())
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str):
                raise VerificationError(ReasonCode.PAYLOAD_INVALID, "no token")
            merged = merge_jwks(self.pinned, hdab, token)
        except (VerificationError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.failures += 1
            self.last_error = getattr(getattr(exc, "reason", None), "value", "unreachable")
            LOG.warning(
                orjson.dumps(
                    {"event": "keys.fetch_failed", "hdab": hdab, "reason": self.last_error}
                ).decode()
            )
            return False
        self.last_error = None
        if merged.generation == self.pinned.generation:
            return False
        self.pinned = merged
        tmp = self.out.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(merged.to_dict()))
        tmp.replace(self.out)
        for hook in self.on_change:
            hook(merged)
        return True

    async def fetch_all(self, session: aiohttp.ClientSession) -> None:
        for hdab in self.issuers:
            await self.fetch(session, hdab)


__all__ = ["JWKS_TYP", "KeySync", "merge_jwks"]
