"""The public client keys a service trusts: who holds each key and which roles it has.

Key handling (JWK, RFC 7638 ``kid``, pinned algorithm, declared use) is
:mod:`trust`; a client key is declared for the ``request`` use only, so it can
sign requests and nothing else. Private keys in the client file are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto import jwk

import trust
from gateway.errors import ConfigError
from trust import KeyUse

ROLES: frozenset[str] = frozenset({"hdab_staff", "data_user", "operator", "auditor"})


@dataclass(frozen=True)
class ClientKey:
    """A key the service knows: who holds it and what it may do."""

    kid: str
    org: str
    roles: frozenset[str]
    public: trust.PublicKey

    @property
    def alg(self) -> str:
        return self.public.alg


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

    def add(self, key: jwk.JWK | trust.PublicKey, *, org: str, roles: Iterable[str]) -> ClientKey:
        public = key.jwk if isinstance(key, trust.PublicKey) else key.export_public(as_dict=True)
        entry = client_key(public, org=org, roles=list(roles))
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
            item: dict[str, Any] = dict(entry.public.jwk)
            item.update(
                kid=entry.kid, alg=entry.alg, ehds_org=entry.org, ehds_roles=sorted(entry.roles)
            )
            out.append(item)
        return {"keys": out}


def client_key(item: Mapping[str, Any], *, org: object, roles: object) -> ClientKey:
    """Validate one trusted client key: public only, supported curve, kid = thumbprint."""
    if not isinstance(org, str) or not trust.is_identifier(org):
        raise ConfigError("client key needs 'ehds_org', an identifier")
    if not isinstance(roles, list | tuple | frozenset | set) or not roles:
        raise ConfigError("client key needs 'ehds_roles', a non-empty list")
    bad = sorted(set(map(str, roles)) - ROLES)
    if bad:
        raise ConfigError(f"unknown role(s): {', '.join(bad)}")
    if trust.PRIVATE_MEMBERS & item.keys():
        raise ConfigError("client key file contains a private key; publish public keys only")
    material = {k: v for k, v in item.items() if k in {"kty", "crv", "x", "y", "kid", "alg"}}
    try:
        public = trust.PublicKey.from_jwk(material, uses={KeyUse.REQUEST})
    except trust.TrustError as exc:
        raise ConfigError(f"client key is not usable: {exc}") from None
    return ClientKey(kid=public.kid, org=org, roles=frozenset(map(str, roles)), public=public)


__all__ = ["ROLES", "ClientKey", "KeyRing", "client_key"]
