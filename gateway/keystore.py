"""The service's own private key on disk, and the public client keys it trusts.

A service signs its audit events, checkpoints, permits and status lists with
one private JWK (Ed25519 by default). On first start, if the configured file
does not exist, a fresh key is generated with mode 0600 — enough for the demo
and for a first deployment; production supplies its own. ``kid`` is always
the RFC 7638 thumbprint (SHA-256), never a value taken from the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto import jwk

from gateway.errors import ConfigError

ALLOWED_ALGS: frozenset[str] = frozenset({"EdDSA", "ES256"})
ROLES: frozenset[str] = frozenset({"hdab_staff", "data_user", "operator", "auditor"})
ORG_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def thumbprint(key: jwk.JWK) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: the ``kid`` everywhere in this project."""
    return str(key.thumbprint())


def alg_for(key: jwk.JWK) -> str:
    """The one algorithm a key may sign with (pinned, never taken from a token)."""
    kty = key.get("kty")
    if kty == "OKP" and key.get("crv") == "Ed25519":
        return "EdDSA"
    if kty == "EC" and key.get("crv") == "P-256":
        return "ES256"
    raise ConfigError(f"unsupported key type {kty}/{key.get('crv')}: use Ed25519 or P-256")


def generate_key(alg: str = "EdDSA") -> jwk.JWK:
    if alg == "EdDSA":
        key = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    elif alg == "ES256":
        key = jwk.JWK.generate(kty="EC", crv="P-256")
    else:
        raise ConfigError(f"unsupported algorithm {alg}")
    return jwk.JWK(**{**key.export(as_dict=True), "kid": thumbprint(key)})


def load_or_create_private_key(path: Path, *, create: bool = True) -> jwk.JWK:
    """Load a private JWK, or generate one (0600) if the file is absent and ``create``."""
    if not path.exists():
        if not create:
            raise ConfigError(
                f"signing key not found: {path} (a configured key is never generated; "
                "create it with `ehds keys generate` or unset the setting)"
            )
        key = generate_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(key.export(private_key=True))
        return key
    try:
        key = jwk.JWK.from_json(path.read_text(encoding="utf-8"))
    except Exception:
        raise ConfigError(f"signing key is not a JWK: {path}") from None
    if not key.has_private:
        raise ConfigError(f"signing key has no private part: {path}")
    alg_for(key)
    return jwk.JWK(**{**key.export(as_dict=True, private_key=True), "kid": thumbprint(key)})


@dataclass(frozen=True)
class ClientKey:
    """A key the service knows: who holds it and what it may do."""

    kid: str
    org: str
    roles: frozenset[str]
    alg: str
    key: jwk.JWK


class KeyRing:
    """Known client public keys by ``kid``; private keys are refused outright."""

    def __init__(self, keys: Iterable[ClientKey] = ()) -> None:
        self._keys: dict[str, ClientKey] = {}
        for key in keys:
            self._keys[key.kid] = key

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, kid: str) -> ClientKey | None:
        return self._keys.get(kid)

    def add(self, key: jwk.JWK, *, org: str, roles: Iterable[str]) -> ClientKey:
        entry = client_key(key.export_public(as_dict=True), org=org, roles=roles)
        self._keys[entry.kid] = entry
        return entry

    @classmethod
    def from_jwks(cls, doc: Mapping[str, Any]) -> KeyRing:
        keys = doc.get("keys")
        if not isinstance(keys, list):
            raise ConfigError("client key file must be a JWKS object with a 'keys' list")
        ring = cls()
        for item in keys:
            if not isinstance(item, Mapping):
                raise ConfigError("client key entries must be JSON objects")
            entry = client_key(item, org=item.get("ehds_org"), roles=item.get("ehds_roles"))
            ring._keys[entry.kid] = entry
        return ring

    @classmethod
    def from_file(cls, path: Path | None) -> KeyRing:
        if path is None:
            return cls()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"client key file not found: {path}") from None
        except ValueError:
            raise ConfigError(f"client key file is not JSON: {path}") from None
        if not isinstance(doc, Mapping):
            raise ConfigError("client key file must be a JWKS object")
        return cls.from_jwks(doc)

    def to_jwks(self) -> dict[str, Any]:
        out = []
        for entry in self._keys.values():
            item = entry.key.export_public(as_dict=True)
            item.update(
                kid=entry.kid, alg=entry.alg, ehds_org=entry.org, ehds_roles=sorted(entry.roles)
            )
            out.append(item)
        return {"keys": out}


def client_key(item: Mapping[str, Any], *, org: object, roles: object) -> ClientKey:
    """Validate one trusted client key: public only, supported curve, kid = thumbprint."""
    if not isinstance(org, str) or not ORG_PATTERN.match(org):
        raise ConfigError("client key needs 'ehds_org', an identifier")
    if not isinstance(roles, list | tuple | frozenset | set) or not roles:
        raise ConfigError("client key needs 'ehds_roles', a non-empty list")
    bad = sorted(set(map(str, roles)) - ROLES)
    if bad:
        raise ConfigError(f"unknown role(s): {', '.join(bad)}")
    material = {
        k: v for k, v in item.items() if k in {"kty", "crv", "x", "y", "d", "kid", "alg", "use"}
    }
    if "d" in material:
        raise ConfigError("client key file contains a private key; publish public keys only")
    try:
        key = jwk.JWK(**{k: v for k, v in material.items() if k not in {"kid", "alg", "use"}})
    except Exception:
        raise ConfigError("client key is not a valid JWK") from None
    alg = alg_for(key)
    kid = thumbprint(key)
    if "kid" in material and material["kid"] != kid:
        raise ConfigError("client key 'kid' is not its RFC 7638 thumbprint")
    if "alg" in material and material["alg"] != alg:
        raise ConfigError(f"client key 'alg' {material['alg']} does not match its curve")
    return ClientKey(kid=kid, org=org, roles=frozenset(map(str, roles)), alg=alg, key=key)


__all__ = [
    "ALLOWED_ALGS",
    "ROLES",
    "ClientKey",
    "KeyRing",
    "alg_for",
    "client_key",
    "generate_key",
    "load_or_create_private_key",
    "thumbprint",
]
