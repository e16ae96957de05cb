"""Signing keys and the trust store: JWK, RFC 7638 thumbprint ``kid``, pinned algorithms.

``EventSigner`` holds one organisation's private key; it signs events (as the
actor that caused them) and checkpoints (as a log). ``TrustStore`` maps
``kid -> TrustedKey(org, public key, alg)``; the algorithm is pinned per key,
so a token claiming another ``alg`` for a known key is refused.

    signer = EventSigner.generate("hospital-a")            # Ed25519 (EdDSA)
    trust = TrustStore([signer.trusted_key()])
    trust.save("trust.json"); TrustStore.load("trust.json")

Supported: ``EdDSA`` (Ed25519, the default) and ``ES256`` (P-256).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from jwcrypto.common import JWException
from jwcrypto.jwk import JWK

from audit_chain.errors import (
    AuditAlgorithmError,
    AuditKeyError,
    AuditSignatureError,
)
from audit_chain.jws import b64url_encode, encode_header
from audit_chain.schema import is_identifier

ALGORITHMS: dict[str, tuple[str, str]] = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}
"""alg -> (JWK kty, crv). Nothing else is accepted anywhere."""

_PUBLIC_MEMBERS = {"OKP": ("kty", "crv", "x"), "EC": ("kty", "crv", "x", "y")}


def _load_jwk(value: JWK | Mapping[str, Any] | str) -> JWK:
    if isinstance(value, JWK):
        return value
    try:
        if isinstance(value, str):
            return JWK.from_json(value)
        return JWK(**dict(value))
    except (JWException, ValueError, TypeError, KeyError) as exc:
        raise AuditKeyError("not a usable JWK") from exc


def _alg_for(key: JWK, alg: str | None) -> str:
    kty, crv = key.get("kty"), key.get("crv")
    for name, (want_kty, want_crv) in ALGORITHMS.items():
        if (kty, crv) == (want_kty, want_crv):
            if alg is not None and alg != name:
                raise AuditAlgorithmError(f"a {crv} key cannot be used with alg {alg}")
            return name
    raise AuditKeyError(f"unsupported key type {kty}/{crv} (supported: Ed25519, P-256)")


def thumbprint(key: JWK) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: the ``kid`` everywhere in this system."""
    return str(key.thumbprint(hashes.SHA256()))


def public_jwk(key: JWK) -> dict[str, str]:
    """Only the public members (never ``d``), in RFC 7638 member order."""
    data = json.loads(key.export_public())
    kty = data.get("kty")
    if kty not in _PUBLIC_MEMBERS:
        raise AuditKeyError(f"unsupported key type {kty}")
    return {m: data[m] for m in _PUBLIC_MEMBERS[kty]}


@dataclass(frozen=True)
class TrustedKey:
    """A public key the verifier trusts, bound to an organisation and one algorithm."""

    kid: str
    org: str
    alg: str
    jwk: dict[str, str]
    _verifier: Any = field(repr=False, compare=False, hash=False, default=None)

    @classmethod
    def create(
        cls, org: str, key: JWK | Mapping[str, Any] | str, alg: str | None = None
    ) -> TrustedKey:
        if not is_identifier(org):
            raise AuditKeyError("organisation id must be an identifier ([A-Za-z0-9._:@-]{1,128})")
        loaded = _load_jwk(key)
        pinned = _alg_for(loaded, alg)
        claimed = loaded.get("kid")
        kid = thumbprint(loaded)
        if claimed is not None and claimed != kid:
            raise AuditKeyError("JWK kid is not its RFC 7638 thumbprint")
        public = public_jwk(loaded)
        verifier = JWK(**public).get_op_key("verify")
        return cls(kid=kid, org=org, alg=pinned, jwk=public, _verifier=verifier)

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> None:
        """Check a JWS signature; the header ``alg`` must be the pinned one."""
        if alg != self.alg:
            raise AuditAlgorithmError(f"key {self.kid} is pinned to {self.alg}, token says {alg}")
        try:
            if self.alg == "EdDSA":
                self._verifier.verify(signature, signing_input)
            else:
                if len(signature) != 64:
                    raise AuditSignatureError("ES256 signature must be 64 bytes")
                der = encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                )
                self._verifier.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise AuditSignatureError(f"signature by {self.kid} does not verify") from exc

    def to_json(self) -> dict[str, Any]:
        return {"org": self.org, "alg": self.alg, "kid": self.kid, "jwk": dict(self.jwk)}


class TrustStore:
    """``kid -> TrustedKey``: which organisation owns a key and which algorithm it may use."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[str, TrustedKey] = {}
        for key in keys:
            self.add_key(key)

    def add_key(self, key: TrustedKey) -> TrustedKey:
        existing = self._keys.get(key.kid)
        if existing is not None and (existing.org, existing.alg) != (key.org, key.alg):
            raise AuditKeyError(f"key {key.kid} is already trusted for another org or alg")
        self._keys[key.kid] = key
        return key

    def add(
        self, org: str, key: JWK | Mapping[str, Any] | str, alg: str | None = None
    ) -> TrustedKey:
        return self.add_key(TrustedKey.create(org, key, alg))

    def get(self, kid: str) -> TrustedKey:
        try:
            return self._keys[kid]
        except KeyError:
            raise AuditKeyError(f"key {kid[:64]!r} is not in the trust store") from None

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
            key = store.add(str(item["org"]), item["jwk"], item.get("alg"))
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
        self, org: str, key: JWK | Mapping[str, Any] | str, alg: str | None = None
    ) -> None:
        loaded = _load_jwk(key)
        if not loaded.has_private:
            raise AuditKeyError("a signer needs a private key")
        self.trusted = TrustedKey.create(org, loaded, alg)
        self._jwk = loaded
        self._signer = loaded.get_op_key("sign")
        self._headers: dict[str, str] = {}

    @classmethod
    def generate(cls, org: str, alg: str = "EdDSA") -> EventSigner:
        if alg not in ALGORITHMS:
            raise AuditAlgorithmError(f"unsupported alg {alg} (supported: {sorted(ALGORITHMS)})")
        kty, crv = ALGORITHMS[alg]
        return cls(org, JWK.generate(kty=kty, crv=crv), alg)

    @classmethod
    def load(cls, path: str | Path, org: str | None = None) -> EventSigner:
        """Read ``{"org": ..., "alg": ..., "jwk": {...private...}}`` (see :meth:`to_json`)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AuditKeyError(f"cannot read signing key {path}: {exc}") from exc
        if not isinstance(data, dict) or "jwk" not in data:
            raise AuditKeyError('signing key file must be {"org", "alg", "jwk"}')
        return cls(org or str(data.get("org")), data["jwk"], data.get("alg"))

    def to_json(self) -> dict[str, Any]:
        """The private key file (keep it secret): org, alg and the private JWK."""
        return {"org": self.org, "alg": self.alg, "jwk": json.loads(self._jwk.export_private())}

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

    def sign(self, payload: bytes, typ: str) -> str:
        """Compact JWS over ``payload`` with header ``{alg, kid, typ}``."""
        header = self._headers.get(typ)
        if header is None:
            header = self._headers[typ] = encode_header(self.alg, self.kid, typ)
        signing_input = f"{header}.{b64url_encode(payload)}"
        data = signing_input.encode("ascii")
        if self.alg == "EdDSA":
            assert isinstance(self._signer, ed25519.Ed25519PrivateKey)
            sig = self._signer.sign(data)
        else:
            r, s = decode_dss_signature(self._signer.sign(data, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{b64url_encode(sig)}"


__all__ = ["ALGORITHMS", "EventSigner", "TrustStore", "TrustedKey", "public_jwk", "thumbprint"]
