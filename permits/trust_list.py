"""The HDAB trust list: which keys may sign permits and status lists, and when.

Key handling itself (JWK, RFC 7638 ``kid``, pinned algorithm, declared use) is
:mod:`trust`. A data holder trusts HDAB keys only through a configured
:class:`TrustList`. Each entry pins the algorithm (so ``alg`` in a token can
never choose it), the HDAB that owns the key, the key's uses (``permit``,
``status``; a verifier refuses a key outside the use it needs) and a signing window:

* ``valid_from``/``valid_until`` bound when the key may *sign* (``iat``). After
  ``valid_until`` the key is retired: what it signed inside its window stays
  verifiable until the permit itself expires.
* ``compromised_at`` invalidates everything the key signed at or after that time.
  Because a thief can backdate ``iat``, the guard additionally requires each
  permit's hash to be listed in the HDAB's status list, which is signed by a
  different key in practice (see docs/permits.md, "Key rotation").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from jwcrypto import jwk

import trust
from permits.errors import PermitKeyError, VerificationError
from permits.reasons import ReasonCode
from trust import KeyUse

HDAB_USES: frozenset[KeyUse] = frozenset({KeyUse.PERMIT, KeyUse.STATUS})
"""Uses of an HDAB trust-list entry that does not declare its own."""


@dataclass(frozen=True)
class TrustedKey:
    """One HDAB verification key with its pinned algorithm and signing window."""

    hdab: str
    country: str
    kid: str
    alg: str
    key: jwk.JWK = field(repr=False, compare=False)
    public: trust.PublicKey = field(repr=False, compare=False)
    valid_from: int = 0
    valid_until: int | None = None
    compromised_at: int | None = None

    def check_signed_at(self, iat: int) -> None:
        """Raise unless a token claiming to be signed at ``iat`` may carry this key's signature."""
        if self.compromised_at is not None and iat >= self.compromised_at:
            raise VerificationError(ReasonCode.KEY_COMPROMISED, f"key {self.kid} compromised")
        if iat < self.valid_from or (self.valid_until is not None and iat > self.valid_until):
            raise VerificationError(
                ReasonCode.KEY_NOT_VALID, f"key {self.kid} not valid at signing time"
            )

    def status(self, now: int) -> str:
        if self.compromised_at is not None and now >= self.compromised_at:
            return "compromised"
        if self.valid_until is not None and now > self.valid_until:
            return "retired"
        if now < self.valid_from:
            return "pending"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "hdab": self.hdab,
            "country": self.country,
            "alg": self.alg,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "compromised_at": self.compromised_at,
            "uses": sorted(self.public.uses),
            "jwk": {**self.public.jwk, "kid": self.kid, "alg": self.alg},
        }


def trusted_key(
    key: jwk.JWK | Mapping[str, Any],
    hdab: str,
    country: str,
    *,
    valid_from: int = 0,
    valid_until: int | None = None,
    compromised_at: int | None = None,
    uses: Iterable[KeyUse | str] = HDAB_USES,
) -> TrustedKey:
    """A trust entry for ``key`` (its public part only), declared for ``uses``."""
    try:
        public = trust.PublicKey.from_jwk(key, uses=uses)
    except trust.TrustError as exc:
        raise PermitKeyError(str(exc)) from None
    return TrustedKey(
        hdab=hdab,
        country=country,
        kid=public.kid,
        alg=public.alg,
        key=public.as_jwcrypto(),
        public=public,
        valid_from=valid_from,
        valid_until=valid_until,
        compromised_at=compromised_at,
    )


class TrustList:
    """The HDAB keys a data holder accepts, indexed by kid; immutable once built.

    ``generation`` changes whenever the content does, so caches of verified
    permits can tell that a key was retired or marked compromised.
    """

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[str, TrustedKey] = {}
        for k in keys:
            if k.kid in self._keys:
                raise PermitKeyError(f"kid {k.kid} listed twice in the trust list")
            if k.alg not in trust.ALLOWED_ALGS or k.public.alg != k.alg or k.public.kid != k.kid:
                raise PermitKeyError(f"kid {k.kid}: algorithm {k.alg} does not fit the key")
            if k.key.has_private:
                raise PermitKeyError(f"kid {k.kid}: trust lists hold public keys only")
            self._keys[k.kid] = k
        material = sorted(
            (k.kid, k.hdab, k.country, k.alg, k.valid_from, k.valid_until, k.compromised_at)
            for k in self._keys.values()
        )
        self.generation = hashlib.sha256(repr(material).encode()).hexdigest()

    def get(self, kid: str) -> TrustedKey | None:
        return self._keys.get(kid)

    def __iter__(self) -> Any:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def with_key(self, key: TrustedKey) -> TrustList:
        """A new list with ``key`` added or replacing the entry with the same kid."""
        keys = {k.kid: k for k in self._keys.values()}
        keys[key.kid] = key
        return TrustList(keys.values())

    def mark_compromised(self, kid: str, at: int) -> TrustList:
        key = self._keys.get(kid)
        if key is None:
            raise PermitKeyError(f"kid {kid} not in the trust list")
        return self.with_key(replace(key, compromised_at=at))

    def retire(self, kid: str, at: int) -> TrustList:
        key = self._keys.get(kid)
        if key is None:
            raise PermitKeyError(f"kid {kid} not in the trust list")
        return self.with_key(replace(key, valid_until=at))

    # -- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"keys": [k.to_dict() for k in self._keys.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustList:
        entries = data.get("keys")
        if not isinstance(entries, list):
            raise PermitKeyError("trust list: 'keys' must be a list")
        keys: list[TrustedKey] = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("jwk"), Mapping):
                raise PermitKeyError(f"trust list entry {i}: missing 'jwk'")
            raw = dict(entry["jwk"])
            if trust.PRIVATE_MEMBERS & raw.keys():
                raise PermitKeyError(f"trust list entry {i}: private key material is not allowed")
            try:
                key = trust.load_jwk(raw)
            except trust.TrustError as exc:
                raise PermitKeyError(f"trust list entry {i}: {exc}") from None
            alg = entry.get("alg")
            if alg != trust.alg_for(key):
                raise PermitKeyError(
                    f"trust list entry {i}: 'alg' must be pinned to {trust.alg_for(key)}"
                )
            for name in ("valid_from", "valid_until", "compromised_at"):
                value = entry.get(name)
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise PermitKeyError(f"trust list entry {i}: {name} must be an integer time")
            hdab, country = entry.get("hdab"), entry.get("country")
            if not isinstance(hdab, str) or not isinstance(country, str):
                raise PermitKeyError(f"trust list entry {i}: 'hdab' and 'country' are required")
            keys.append(
                trusted_key(
                    key,
                    hdab,
                    country,
                    valid_from=entry.get("valid_from") or 0,
                    valid_until=entry.get("valid_until"),
                    compromised_at=entry.get("compromised_at"),
                    uses=entry.get("uses", HDAB_USES),
                )
            )
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | Path) -> TrustList:
        try:
            data = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise PermitKeyError(f"cannot read trust list: {type(exc).__name__}") from None
        return cls.from_dict(data)


__all__ = ["HDAB_USES", "TrustList", "TrustedKey", "trusted_key"]
