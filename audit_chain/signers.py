"""Who may sign into a log: organisations bound to keys declared for the ``audit`` use.

The key and JWS machinery is :mod:`trust`; this module adds only what the audit
chain needs on top: each key belongs to one organisation (an event's
``actor.org`` must own the key that signed it), a :class:`TrustStore` file
format, and translation of :mod:`trust` refusals into the audit chain's stable
codes (``AUDIT_BAD_SIGNATURE``, ``AUDIT_UNKNOWN_KEY``, ``AUDIT_ALG_MISMATCH``,
``AUDIT_KEY_USE``).

    signer = EventSigner.generate("hospital-a")            # Ed25519 (EdDSA)
    trust = TrustStore([signer.trusted_key()])
    trust.save("trust.json"); TrustStore.load("trust.json")

A trust-store entry without ``uses`` is an ``audit`` key (the store's purpose);
entries for witnesses say ``"uses": ["witness"]``. A verifier requiring one use
refuses a key declared only for another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto.jwk import JWK

import trust
from audit_chain.errors import (
    AuditAlgorithmError,
    AuditError,
    AuditKeyError,
    AuditKeyUseError,
    AuditSchemaError,
    AuditSignatureError,
)
from trust import KeyUse

AUDIT_USES: frozenset[KeyUse] = frozenset({KeyUse.AUDIT})
MAX_TOKEN_BYTES = 16_384  # events and checkpoints are small; larger is refused before parsing


def as_audit_error(exc: trust.TrustError) -> AuditError:
    """The audit chain's error (and stable code) for a :mod:`trust` refusal."""
    if isinstance(exc, AuditError):
        return exc
    if isinstance(exc, trust.KeyUseError):
        return AuditKeyUseError(str(exc))
    if isinstance(exc, trust.TrustKeyError):
        return AuditKeyError(str(exc))
    if isinstance(exc, trust.AlgorithmError):
        return AuditAlgorithmError(str(exc))
    return AuditSignatureError(str(exc))


def _uses(value: Iterable[KeyUse | str] | None) -> frozenset[KeyUse]:
    try:
        return AUDIT_USES if value is None else trust.parse_uses(list(value))
    except trust.TrustError as exc:
        raise as_audit_error(exc) from None


@dataclass(frozen=True)
class TrustedKey:
    """A public key the verifier trusts, bound to an organisation, one algorithm and its uses."""

    org: str
    key: trust.PublicKey

    @property
    def kid(self) -> str:
        return self.key.kid

    @property
    def alg(self) -> str:
        return self.key.alg

    @property
    def uses(self) -> frozenset[KeyUse]:
        return self.key.uses

    @property
    def jwk(self) -> dict[str, str]:
        return dict(self.key.jwk)

    @classmethod
    def create(
        cls,
        org: str,
        key: JWK | Mapping[str, Any] | str | trust.PublicKey,
        alg: str | None = None,
        *,
        uses: Iterable[KeyUse | str] | None = None,
    ) -> TrustedKey:
        if not trust.is_identifier(org):
            raise AuditKeyError("organisation id must be an identifier ([A-Za-z0-9._:@-]{1,128})")
        if isinstance(key, trust.PublicKey):
            if alg is not None and alg != key.alg:
                raise AuditAlgorithmError(f"key {key.kid} is pinned to {key.alg}")
            return cls(org, key)
        try:
            return cls(org, trust.PublicKey.from_jwk(key, uses=_uses(uses), alg=alg))
        except trust.TrustError as exc:
            raise as_audit_error(exc) from None

    def verify(
        self, alg: str, signing_input: bytes, signature: bytes, *, use: KeyUse = KeyUse.AUDIT
    ) -> None:
        """Check a JWS signature: the key's use, its pinned ``alg``, then the bytes."""
        try:
            self.key.verify(alg, signing_input, signature, use=use)
        except trust.TrustError as exc:
            raise as_audit_error(exc) from None

    def to_json(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "alg": self.alg,
            "kid": self.kid,
            "uses": sorted(self.uses),
            "jwk": dict(self.key.jwk),
        }


class TrustStore:
    """``kid -> TrustedKey``: which organisation owns a key, its algorithm and its uses."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[str, TrustedKey] = {}
        for key in keys:
            self.add_key(key)

    def add_key(self, key: TrustedKey) -> TrustedKey:
        existing = self._keys.get(key.kid)
        if existing is not None and (existing.org, existing.alg, existing.uses) != (
            key.org,
            key.alg,
            key.uses,
        ):
            raise AuditKeyError(f"key {key.kid} is already trusted for another org, alg or use")
        self._keys[key.kid] = key
        return key

    def add(
        self,
        org: str,
        key: JWK | Mapping[str, Any] | str | trust.PublicKey,
        alg: str | None = None,
        *,
        uses: Iterable[KeyUse | str] | None = None,
    ) -> TrustedKey:
        return self.add_key(TrustedKey.create(org, key, alg, uses=uses))

    def get(self, kid: str) -> TrustedKey:
        try:
            return self._keys[kid]
        except KeyError:
            raise AuditKeyError(f"key {kid[:64]!r} is not in the trust store") from None

    def lookup(self, sig: trust.JwsSignature) -> trust.PublicKey:
        """:data:`trust.jws.KeyLookup` over this store."""
        return self.get(sig.kid or "").key

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def to_json(self) -> dict[str, Any]:
        return {"keys": [k.to_json() for k in self._keys.values()]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrustStore:
        entries = data.get("keys") if isinstance(data, Mapping) else None
        if not isinstance(entries, list):
            raise AuditKeyError('trust store must be {"keys": [{"org", "alg", "jwk"}, ...]}')
        store = cls()
        for item in entries:
            if not isinstance(item, Mapping) or "jwk" not in item or "org" not in item:
                raise AuditKeyError("trust store entry needs org and jwk")
            if not isinstance(item["jwk"], Mapping) or trust.PRIVATE_MEMBERS & item["jwk"].keys():
                raise AuditKeyError("trust store entries hold public keys only")
            key = store.add(str(item["org"]), item["jwk"], item.get("alg"), uses=item.get("uses"))
            if "kid" in item and item["kid"] != key.kid:
                raise AuditKeyError("trust store kid is not the key's RFC 7638 thumbprint")
        return store

    @classmethod
    def load(cls, path: str | Path) -> TrustStore:
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise AuditKeyError(f"cannot read trust store {path}: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


class EventSigner:
    """An organisation's private key: signs events and checkpoints as compact JWS."""

    def __init__(
        self,
        org: str,
        key: JWK | Mapping[str, Any] | str | trust.SigningKey,
        alg: str | None = None,
        *,
        uses: Iterable[KeyUse | str] | None = None,
    ) -> None:
        try:
            if isinstance(key, trust.SigningKey):
                self.key = key
            else:
                self.key = trust.SigningKey(key, uses=_uses(uses), alg=alg)
        except trust.TrustError as exc:
            raise as_audit_error(exc) from None
        self.trusted = TrustedKey.create(org, self.key.public)
        self._headers: dict[str, str] = {}

    @classmethod
    def generate(
        cls, org: str, alg: str = "EdDSA", *, uses: Iterable[KeyUse | str] | None = None
    ) -> EventSigner:
        try:
            return cls(org, trust.SigningKey.generate(alg, uses=_uses(uses)))
        except trust.TrustError as exc:
            raise as_audit_error(exc) from None

    @classmethod
    def load(cls, path: str | Path, org: str | None = None) -> EventSigner:
        """Read ``{"org": ..., "alg": ..., "jwk": {...private...}}`` (see :meth:`to_json`)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AuditKeyError(f"cannot read signing key {path}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("jwk"), dict):
            raise AuditKeyError('signing key file must be {"org", "alg", "jwk"}')
        uses = data["jwk"].get(trust.keys.USES_MEMBER)
        return cls(org or str(data.get("org")), data["jwk"], data.get("alg"), uses=uses)

    def to_json(self) -> dict[str, Any]:
        """The private key file (keep it secret): org, alg and the private JWK with its uses."""
        return {"org": self.org, "alg": self.alg, "jwk": self.key.private_jwk()}

    @property
    def org(self) -> str:
        return self.trusted.org

    @property
    def kid(self) -> str:
        return self.trusted.kid

    @property
    def alg(self) -> str:
        return self.trusted.alg

    def trusted_key(self) -> TrustedKey:
        return self.trusted

    def public_jwk(self) -> dict[str, str]:
        return dict(self.trusted.jwk)

    def sign(self, payload: bytes, typ: str, *, use: KeyUse = KeyUse.AUDIT) -> str:
        """Compact JWS over ``payload`` with header ``{alg, kid, typ}`` (header cached per typ)."""
        header = self._headers.get(typ)
        if header is None:
            header = self._headers[typ] = trust.jws.encode_header(self.key, typ)
        payload_b64 = trust.b64url_encode(payload)
        try:
            signature = trust.jws.sign_protected(header, payload_b64, self.key, use=use)
        except trust.TrustError as exc:
            raise as_audit_error(exc) from None
        return f"{header}.{payload_b64}.{signature}"


@dataclass(frozen=True)
class Token:
    """A parsed compact JWS as the audit chain reads it."""

    token: str
    kid: str
    payload: bytes


def parse_token(token: str | bytes, typ: str) -> Token:
    """Shape and header check of a compact JWS of type ``typ``, without the signature.

    A token of another type is ``AUDIT_SCHEMA`` (it is not what the caller holds);
    any other header or encoding problem is ``AUDIT_BAD_SIGNATURE``.
    """
    try:
        parsed = trust.parse_compact(token, max_bytes=MAX_TOKEN_BYTES)
        (sig,) = parsed.signatures
        trust.check_header(sig.header, typ)
    except trust.HeaderError as exc:
        if exc.code == "TRUST_TYP_MISMATCH":
            raise AuditSchemaError(f"not a {typ} token") from None
        raise as_audit_error(exc) from None
    except trust.TrustError as exc:
        raise as_audit_error(exc) from None
    return Token(parsed.compact(), str(sig.header["kid"]), parsed.payload)


def verify_token(
    token: str | bytes, store: TrustStore, typ: str, *, use: KeyUse = KeyUse.AUDIT
) -> tuple[Token, TrustedKey]:
    """Parse and verify a compact JWS of type ``typ`` by a trusted key declared for ``use``."""
    try:
        parsed = trust.parse_compact(token, max_bytes=MAX_TOKEN_BYTES)
        ((sig, _),) = trust.verify_jws(parsed, typ=typ, use=use, lookup=store.lookup)
    except trust.TrustError as exc:
        raise as_audit_error(exc) from None
    return Token(parsed.compact(), str(sig.header["kid"]), parsed.payload), store.get(
        str(sig.header["kid"])
    )


__all__ = [
    "AUDIT_USES",
    "EventSigner",
    "Token",
    "TrustStore",
    "TrustedKey",
    "as_audit_error",
    "parse_token",
    "verify_token",
]
