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
from typing import Literal, Protocol

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
    token: str


class VersionFloor(Protocol):
    """The highest status-list version accepted per HDAB, kept where the guard keeps its state.

    Without it a restarted data holder would accept an older list that still shows a
    revoked permit as valid: a restart must never un-revoke.
    """

    def highest(self, hdab: str) -> int | None: ...

    def raise_to(self, hdab: str, version: int) -> None: ...


@dataclass(frozen=True)
class ListInfo:
    """What ``/ready`` and ``/metrics`` show per HDAB: version, signing time, age, freshness."""

    hdab: str
    version: int
    iat: int
    age: float
    fresh: bool
    revoked: int


class StatusListStore:
    """The latest verified status list per HDAB, as held by one data holder."""

    def __init__(
        self,
        trust: TrustList,
        *,
        max_age: int = DEFAULT_MAX_AGE,
        leeway: int = 30,
        clock: Callable[[], float] = time.time,
        floor: VersionFloor | None = None,
    ) -> None:
        self.trust = trust
        self.floor = floor
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
            persisted = self.floor.highest(status.iss) if self.floor is not None else None
            if persisted is not None and status.version < persisted:
                raise VerificationError(
                    ReasonCode.STATUS_LIST_ROLLBACK,
                    "status list older than one accepted before (persisted version)",
                )
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
            if self.floor is not None:
                self.floor.raise_to(status.iss, status.version)
            self._lists[status.iss] = _Held(status, digest, token.strip())
        return status

    def get(self, hdab: str) -> StatusList | None:
        held = self._lists.get(hdab)
        return held.status if held else None

    def token(self, hdab: str) -> str | None:
        """The signed token of the list held for ``hdab`` (to persist or forward it)."""
        held = self._lists.get(hdab)
        return held.token if held else None

    def info(self, now: float | None = None) -> list[ListInfo]:
        """Version, age and freshness of every held list (for readiness and metrics)."""
        now = self._now() if now is None else now
        return [
            ListInfo(
                hdab=iss,
                version=h.status.version,
                iat=h.status.iat,
                age=max(0.0, now - h.status.iat),
                fresh=now - h.status.iat <= self.max_age,
                revoked=h.status.revoked_count(),
            )
            for iss, h in sorted(self._lists.items())
        ]

    def _fresh(self, hdab: str, now: float) -> _Held:
        held = self._lists.get(hdab)
        if held is None:
            raise VerificationError(ReasonCode.STATUS_LIST_MISSING, "no status list for this HDAB")
        if now - held.status.iat > self.max_age:
            raise VerificationError(
                ReasonCode.STATUS_LIST_STALE, "status list older than the configured maximum"
            )
        return held

    def check_co_issuer(self, hdab: str, jti: str, now: float | None = None) -> None:
        """A co-issuing HDAB's list: present and fresh, and the permit not revoked there.

        The lead's list proves issuance (the permit must be listed there); every
        HDAB that signed may revoke, so each co-issuer's list is consulted too. A
        co-issuer that never recorded the permit simply does not list it.
        """
        now = self._now() if now is None else now
        entry = self._fresh(hdab, now).status.entries.get(jti)
        if entry is not None and entry.status == "revoked":
            raise VerificationError(ReasonCode.PERMIT_REVOKED, "permit revoked by a co-issuer")

    def check(
        self, hdab: str, jti: str, version: int, permit_hash: str, now: float | None = None
    ) -> StatusEntry:
        """Raise with the precise reason unless the permit is listed, current and valid."""
        now = self._now() if now is None else now
        entry = self._fresh(hdab, now).status.entries.get(jti)
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
    "ListInfo",
    "StatusEntry",
    "StatusList",
    "StatusListStore",
    "VersionFloor",
    "build_status_list",
    "parse_status_list",
    "sign_status_list",
]
