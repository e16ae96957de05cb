"""The HDAB's signed, monotonically versioned status (revocation) list.

Every permit the HDAB issues appears here with its current version and hash, so
a data holder can check three things with one signed document: the permit was
really issued (a forged or backdated token with a stolen key is *unknown*), it
is the current amendment (older versions are *superseded*) and it is not
*revoked* (Art. 63). Each publication increments ``version``; a store never goes
back to a lower version (rollback), and a list older than ``max_age`` seconds
means deny, because "we could not check" must never mean "allowed".
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from jwcrypto import jwk
from pydantic import Field, ValidationError

from permits.errors import VerificationError
from permits.model import ID_PATTERN, FrozenModel, Identifier, NumericDate, Sha256
from permits.reasons import ReasonCode
from permits.tokens import sign_compact, verify_hdab_token
from permits.trust_list import TrustList
from trust import KeyUse, SigningKey, canonical_json, sha256_tag, strict_json

STATUS_TYP = "ehds-statuslist+jws"
DEFAULT_MAX_AGE = 3600


class StatusEntry(FrozenModel):
    status: Literal["valid", "revoked"]
    version: int = Field(
        ge=1, description="Current version of the permit; lower versions are superseded."
    )
    hash: Sha256 = Field(description="permit_hash of the current version.")
    reason: str | None = Field(default=None, pattern=r"^[a-z0-9_.:-]{1,64}$")


class StatusList(FrozenModel):
    iss: Identifier
    version: int = Field(ge=1)
    iat: NumericDate
    entries: dict[str, StatusEntry] = Field(default_factory=dict)

    def revoked_count(self) -> int:
        return sum(1 for e in self.entries.values() if e.status == "revoked")


def sign_status_list(status: StatusList, key: jwk.JWK | SigningKey) -> str:
    return sign_compact(
        canonical_json(status.model_dump(mode="json", exclude_none=True)),
        key,
        STATUS_TYP,
        KeyUse.STATUS,
    )


def parse_status_list(token: str, trust: TrustList) -> StatusList:
    """Verify a status list token against the trust list and parse it."""

    parsed, signers = verify_hdab_token(token, trust, typ=STATUS_TYP, use=KeyUse.STATUS)
    if len(signers) != 1:
        raise VerificationError(
            ReasonCode.TOKEN_MALFORMED, "a status list has exactly one signature"
        )
    try:
        strict_json(parsed.payload)
        status = StatusList.model_validate_json(parsed.payload, strict=True)
    except (ValueError, ValidationError):
        raise VerificationError(ReasonCode.PAYLOAD_INVALID, "status list payload invalid") from None
    if any(not _valid_id(k) for k in status.entries):
        raise VerificationError(ReasonCode.PAYLOAD_INVALID, "status list entry id invalid")
    (signer,) = signers
    if signer.hdab != status.iss:
        raise VerificationError(ReasonCode.SIGNER_UNEXPECTED, "status list signed by another HDAB")
    signer.check_signed_at(status.iat)
    return status


def _valid_id(value: str) -> bool:
    return re.match(ID_PATTERN, value) is not None


@dataclass(frozen=True)
class _Held:
    status: StatusList
    digest: str


class StatusListStore:
    """The latest verified status list per HDAB, as held by one data holder."""

    def __init__(
        self,
        trust: TrustList,
        *,
        max_age: int = DEFAULT_MAX_AGE,
        leeway: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trust = trust
        self.max_age = max_age
        self.leeway = leeway
        self._clock = clock
        self._lists: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return float(self._clock())

    def update(self, token: str) -> StatusList:
        """Accept a newer list; refuse a lower version or a different list under the same version."""
        status = parse_status_list(token, self.trust)
        if status.iat > self._now() + self.leeway:
            raise VerificationError(
                ReasonCode.STATUS_LIST_INVALID, "status list issued in the future"
            )
        digest = sha256_tag(token.strip().encode())
        with self._lock:
            held = self._lists.get(status.iss)
            if held is not None:
                if status.version < held.status.version:
                    raise VerificationError(
                        ReasonCode.STATUS_LIST_ROLLBACK, "status list version went back"
                    )
                if status.version == held.status.version:
                    if status != held.status:
                        raise VerificationError(
                            ReasonCode.STATUS_LIST_ROLLBACK, "two lists with one version"
                        )
                    return held.status
            self._lists[status.iss] = _Held(status, digest)
        return status

    def get(self, hdab: str) -> StatusList | None:
        held = self._lists.get(hdab)
        return held.status if held else None

    def check(
        self, hdab: str, jti: str, version: int, permit_hash: str, now: float | None = None
    ) -> StatusEntry:
        """Raise with the precise reason unless the permit is listed, current and valid."""
        now = self._now() if now is None else now
        held = self._lists.get(hdab)
        if held is None:
            raise VerificationError(ReasonCode.STATUS_LIST_MISSING, "no status list for this HDAB")
        if now - held.status.iat > self.max_age:
            raise VerificationError(
                ReasonCode.STATUS_LIST_STALE, "status list older than the configured maximum"
            )
        entry = held.status.entries.get(jti)
        if entry is None:
            raise VerificationError(
                ReasonCode.PERMIT_UNKNOWN, "permit not in the HDAB's status list"
            )
        if entry.status == "revoked":
            raise VerificationError(ReasonCode.PERMIT_REVOKED, "permit revoked")
        if version < entry.version:
            raise VerificationError(
                ReasonCode.PERMIT_SUPERSEDED, "a newer version of this permit exists"
            )
        if version != entry.version or permit_hash != entry.hash:
            raise VerificationError(
                ReasonCode.PERMIT_HASH_MISMATCH, "permit differs from the one listed"
            )
        return entry


def build_status_list(
    iss: str, version: int, iat: int, entries: Mapping[str, StatusEntry]
) -> StatusList:
    return StatusList(iss=iss, version=version, iat=iat, entries=dict(entries))


__all__ = [
    "DEFAULT_MAX_AGE",
    "STATUS_TYP",
    "StatusEntry",
    "StatusList",
    "StatusListStore",
    "build_status_list",
    "parse_status_list",
    "sign_status_list",
]
