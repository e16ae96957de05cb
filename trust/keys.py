"""Keys: Ed25519/ES256 JWKs, RFC 7638 ``kid``, pinned algorithms and a declared use per key.

A key is trusted for *what it is for*, not only for who holds it. Every
:class:`PublicKey` carries the uses its owner declared (``permit``, ``status``,
``audit``, ``request``, ``witness``); :meth:`PublicKey.verify` takes the use the
verifier requires and refuses a signature by a key outside it, so a stolen
witness key cannot sign a permit and a request key cannot sign an audit event.

The algorithm is derived from the key type and pinned: ``EdDSA`` for Ed25519,
``ES256`` for P-256. A token's ``alg`` never chooses it. ``kid`` is always the
RFC 7638 SHA-256 thumbprint, recomputed, never taken from a file or a token.

Signing and verifying use ``cryptography`` directly (jwcrypto builds the keys):
a jwcrypto JWS object round trip costs about four times the raw signature and
the audit log signs thousands of events per second. Tests check jwcrypto
accepts our tokens and we accept jwcrypto's.

    key = SigningKey.generate(uses={KeyUse.AUDIT})
    key.save("audit-key.jwk")                    # private JWK, mode 0600
    public = key.public                          # PublicKey(kid, alg, uses, jwk)
    public.verify("EdDSA", data, sig, use=KeyUse.AUDIT)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from jwcrypto.common import JWException
from jwcrypto.jwk import JWK

from trust.errors import AlgorithmError, KeyUseError, SignatureError, TrustKeyError


class KeyUse(StrEnum):
    """What a key may sign. Declared by its owner, required by each verifier."""

    PERMIT = "permit"  # data permits (HDAB)
    STATUS = "status"  # revocation status lists (HDAB)
    AUDIT = "audit"  # audit events and log checkpoints
    REQUEST = "request"  # signed requests by data users, staff and services
    WITNESS = "witness"  # cosignatures of other organisations' checkpoints


ALL_USES: frozenset[KeyUse] = frozenset(KeyUse)
USES_MEMBER = "ehds_uses"
"""JWK member holding the declared uses (a list of :class:`KeyUse` values)."""

ALGORITHMS: dict[str, tuple[str, str]] = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}
"""alg -> (JWK kty, crv). Nothing else is accepted anywhere."""
ALLOWED_ALGS: frozenset[str] = frozenset(ALGORITHMS)
PUBLIC_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_MEMBERS = frozenset({"kty", "crv", "x", "y", "d"})


def parse_uses(value: object) -> frozenset[KeyUse]:
    """Uses from a list of strings; an empty or unknown use is refused."""
    if isinstance(value, KeyUse):
        return frozenset({value})
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TrustKeyError("key uses must be a list of: " + ", ".join(sorted(KeyUse)))
    try:
        uses = frozenset(KeyUse(str(v)) for v in value)
    except ValueError:
        raise TrustKeyError("unknown key use (known: " + ", ".join(sorted(KeyUse)) + ")") from None
    if not uses:
        raise TrustKeyError("a key needs at least one declared use")
    return uses


def _as_jwk(value: JWK | Mapping[str, Any] | str | bytes) -> JWK:
    if isinstance(value, JWK):
        return value
    try:
        if isinstance(value, str | bytes):
            value = orjson.loads(value)
        if not isinstance(value, Mapping):
            raise TypeError("not an object")
        return JWK(**{k: v for k, v in value.items() if k in _KEY_MEMBERS})
    except (JWException, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise TrustKeyError("not a usable JWK") from None


def alg_for(key: JWK | Mapping[str, Any]) -> str:
    """The one algorithm a key may be used with, derived from its type."""
    kty, crv = key.get("kty"), key.get("crv")
    for name, pair in ALGORITHMS.items():
        if (kty, crv) == pair:
            return name
    raise TrustKeyError(f"unsupported key type {kty}/{crv} (supported: Ed25519, P-256)")


def thumbprint(key: JWK | Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url (43 chars): the ``kid`` everywhere."""
    jwk = _as_jwk(key)
    return str(jwk.thumbprint(hashes.SHA256()))


def public_members(key: JWK) -> dict[str, str]:
    """Only the public key members (never ``d``), in RFC 7638 (lexicographic) order."""
    data = key.export_public(as_dict=True)
    kty = data.get("kty")
    if kty not in PUBLIC_MEMBERS:
        raise TrustKeyError(f"unsupported key type {kty}")
    return {m: str(data[m]) for m in PUBLIC_MEMBERS[kty]}


def public_jwk(key: JWK) -> dict[str, str]:
    """The public members with ``kid`` and ``alg``: what a JWKS or trust file publishes."""
    return {**public_members(key), "kid": thumbprint(key), "alg": alg_for(key)}


def _check_claims(data: Mapping[str, Any], kid: str, alg: str) -> None:
    if data.get("kid") not in (None, kid):
        raise TrustKeyError("JWK kid is not its RFC 7638 thumbprint")
    if data.get("alg") not in (None, alg):
        raise AlgorithmError(f"JWK alg {str(data.get('alg'))[:16]!r} does not fit its key ({alg})")


def generate_jwk(alg: str = "EdDSA") -> JWK:
    """A new private jwcrypto JWK with ``kid`` (thumbprint) and ``alg`` set."""
    if alg not in ALGORITHMS:
        raise AlgorithmError(f"unsupported alg {alg[:16]!r} (supported: {sorted(ALGORITHMS)})")
    kty, crv = ALGORITHMS[alg]
    key = JWK.generate(kty=kty, crv=crv)
    key.update(kid=thumbprint(key), alg=alg)
    return key


def load_jwk(source: JWK | Mapping[str, Any] | str | Path) -> JWK:
    """A jwcrypto JWK from a JWK, dict, JSON text or file; ``kid``/``alg`` checked and set."""
    if isinstance(source, Path):
        try:
            source = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise TrustKeyError(f"cannot read key file: {type(exc).__name__}") from None
    data: Mapping[str, Any]
    if isinstance(source, JWK):
        data = source.export(private_key=source.has_private, as_dict=True)
    elif isinstance(source, str):
        try:
            data = orjson.loads(source)
        except orjson.JSONDecodeError:
            raise TrustKeyError("key is not JSON") from None
    else:
        data = source
    if not isinstance(data, Mapping):
        raise TrustKeyError("a JWK is a JSON object")
    key = _as_jwk(data)
    alg, kid = alg_for(key), thumbprint(key)
    _check_claims(data, kid, alg)
    key.update(kid=kid, alg=alg)
    return key


@dataclass(frozen=True)
class PublicKey:
    """A verification key: its ``kid``, pinned ``alg``, declared ``uses`` and public JWK."""

    kid: str
    alg: str
    uses: frozenset[KeyUse]
    jwk: dict[str, str]
    _verifier: Any = field(repr=False, compare=False, hash=False, default=None)

    @classmethod
    def from_jwk(
        cls,
        key: JWK | Mapping[str, Any] | str,
        *,
        uses: Iterable[KeyUse | str] | None = None,
        alg: str | None = None,
    ) -> PublicKey:
        """Build from a JWK; ``uses`` from the argument or else the JWK's ``ehds_uses``.

        A private JWK is accepted (its public part is kept); a trust store that
        must hold public keys only checks :data:`PRIVATE_MEMBERS` itself.
        """
        data: Mapping[str, Any] = {}
        if isinstance(key, Mapping):
            data = key
        elif isinstance(key, str):
            try:
                data = orjson.loads(key)
            except orjson.JSONDecodeError:
                raise TrustKeyError("key is not JSON") from None
        elif isinstance(key, JWK):
            data = {k: key.get(k) for k in ("kid", "alg") if key.get(k) is not None}
        loaded = _as_jwk(key if isinstance(key, JWK) else data)
        pinned, kid = alg_for(loaded), thumbprint(loaded)
        if alg is not None and alg != pinned:
            raise AlgorithmError(f"a {loaded.get('crv')} key cannot be used with alg {alg[:16]}")
        _check_claims(data, kid, pinned)
        if uses is None:
            if USES_MEMBER not in data:
                raise TrustKeyError(f"key {kid} declares no use ({USES_MEMBER})")
            declared = parse_uses(data[USES_MEMBER])
        else:
            declared = parse_uses(list(uses))
        public = public_members(loaded)
        verifier = JWK(**public).get_op_key("verify")
        return cls(kid=kid, alg=pinned, uses=declared, jwk=public, _verifier=verifier)

    def allows(self, use: KeyUse) -> bool:
        return use in self.uses

    def require(self, use: KeyUse) -> None:
        """Refuse (``TRUST_KEY_USE``) unless this key was declared for ``use``."""
        if use not in self.uses:
            raise KeyUseError(f"key {self.kid} is not declared for {use.value}")

    def verify(self, alg: str, signing_input: bytes, signature: bytes, *, use: KeyUse) -> None:
        """Check one JWS signature: the required use, the pinned ``alg``, then the bytes."""
        self.require(use)
        if alg != self.alg:
            raise AlgorithmError(f"key {self.kid} is pinned to {self.alg}, token says {alg[:16]}")
        try:
            if self.alg == "EdDSA":
                self._verifier.verify(signature, signing_input)
            else:
                if len(signature) != 64:
                    raise SignatureError("ES256 signature must be 64 bytes")
                der = encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                )
                self._verifier.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignatureError(f"signature by {self.kid} does not verify") from None

    def to_jwk(self) -> dict[str, Any]:
        """Public JWK with ``kid``, ``alg`` and the declared uses (what trust files hold)."""
        return {**self.jwk, "kid": self.kid, "alg": self.alg, USES_MEMBER: sorted(self.uses)}

    def as_jwcrypto(self) -> JWK:
        return JWK(**self.jwk, kid=self.kid, alg=self.alg)


class SigningKey:
    """A private key with its declared uses; refuses to sign for any other use."""

    def __init__(
        self,
        key: JWK | Mapping[str, Any] | str,
        *,
        uses: Iterable[KeyUse | str] | None = None,
        alg: str | None = None,
    ) -> None:
        loaded = _as_jwk(key)
        if not loaded.has_private:
            raise TrustKeyError("a signing key needs its private part")
        self.public = PublicKey.from_jwk(
            key if not isinstance(key, JWK) else loaded, uses=uses, alg=alg
        )
        self.jwk = loaded
        self._signer = loaded.get_op_key("sign")

    @classmethod
    def generate(cls, alg: str = "EdDSA", *, uses: Iterable[KeyUse | str]) -> SigningKey:
        return cls(generate_jwk(alg), uses=uses)

    @classmethod
    def load(cls, path: str | Path, *, uses: Iterable[KeyUse | str] | None = None) -> SigningKey:
        """Read a private JWK file; ``uses`` overrides the file's ``ehds_uses``."""
        try:
            data = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise TrustKeyError(f"cannot read signing key {path}: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise TrustKeyError(f"signing key {path} is not a JWK object")
        return cls(data, uses=uses)

    @classmethod
    def load_or_create(
        cls, path: str | Path, *, uses: Iterable[KeyUse | str], create: bool = True
    ) -> SigningKey:
        """Load a private JWK, or generate one (file mode 0600) if absent and ``create``.

        A new key is declared for ``uses``. An existing file keeps the uses it
        declares and must cover ``uses`` (else :class:`KeyUseError`); a file
        that declares none is taken to be for ``uses``.
        """
        path = Path(path)
        needed = parse_uses(list(uses))
        if not path.exists():
            if not create:
                raise TrustKeyError(f"signing key not found: {path}")
            key = cls.generate(uses=needed)
            key.save(path)
            return key
        try:
            declared = orjson.loads(path.read_bytes()).get(USES_MEMBER)
        except (OSError, orjson.JSONDecodeError, AttributeError) as exc:
            raise TrustKeyError(f"cannot read signing key {path}: {type(exc).__name__}") from None
        key = cls.load(path, uses=needed if declared is None else None)
        missing = needed - key.uses
        if missing:
            raise KeyUseError(f"key {key.kid} is not declared for {', '.join(sorted(missing))}")
        return key

    def save(self, path: str | Path) -> None:
        """Write the private JWK with its uses; the file is created with mode 0600, never reused."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(self.private_jwk(), option=orjson.OPT_SORT_KEYS))

    def private_jwk(self) -> dict[str, Any]:
        """The private JWK (keep it secret) with ``kid``, ``alg`` and ``ehds_uses``."""
        data = self.jwk.export_private(as_dict=True)
        secret = {k: data[k] for k in (*PUBLIC_MEMBERS[data["kty"]], "d")}
        return {**secret, "kid": self.kid, "alg": self.alg, USES_MEMBER: sorted(self.uses)}

    @property
    def kid(self) -> str:
        return self.public.kid

    @property
    def alg(self) -> str:
        return self.public.alg

    @property
    def uses(self) -> frozenset[KeyUse]:
        return self.public.uses

    def sign(self, signing_input: bytes, *, use: KeyUse) -> bytes:
        """Raw JWS signature (Ed25519, or ES256 as r||s) over ``signing_input``."""
        self.public.require(use)
        if self.alg == "EdDSA":
            assert isinstance(self._signer, ed25519.Ed25519PrivateKey)
            return self._signer.sign(signing_input)
        r, s = decode_dss_signature(self._signer.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def signing_key(
    key: SigningKey | JWK | Mapping[str, Any] | str, *, uses: Iterable[KeyUse | str]
) -> SigningKey:
    """``key`` as a :class:`SigningKey` (for APIs that still accept a jwcrypto JWK)."""
    return key if isinstance(key, SigningKey) else SigningKey(key, uses=uses)


__all__ = [
    "ALGORITHMS",
    "ALLOWED_ALGS",
    "ALL_USES",
    "PRIVATE_MEMBERS",
    "USES_MEMBER",
    "KeyUse",
    "PublicKey",
    "SigningKey",
    "alg_for",
    "generate_jwk",
    "load_jwk",
    "parse_uses",
    "public_jwk",
    "public_members",
    "signing_key",
    "thumbprint",
]
