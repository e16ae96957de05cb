"""The HDAB's keys: one for permits (rotated without downtime), one for status lists.

Key usage is declared with :mod:`trust` (``permit``, ``status``): the status
list is signed by its own key, so a stolen permit key cannot sign a list that
un-revokes anything, and a verifier refuses a status list signed by a
permit-only key. The key set lives next to the service key under
``<data_dir>/keys/``:

* ``hdab-status.jwk`` - the status-list key (created on first start),
* ``hdab-keyset.json`` - every permit key ever used, with its signing window:
  rotation adds a new key (``valid_from`` = now) and retires the old one
  (``valid_until`` = now). Permits the old key signed stay verifiable until they
  expire or are revoked; anything it signs later is refused (``key_not_valid``).

Published: ``GET /.well-known/jwks.json`` (each key with ``ehds_uses`` and its
window) and ``GET /.well-known/jwks.jws``, the same document signed by the
current permit key and the one it replaced, so a gateway that pinned the old key
can follow a rotation (see :mod:`gateway.key_sync`). ``POST /keys/rotate``
(role ``hdab_staff``) rotates the permit key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

import trust
from gateway.http.routing import RouteSpec, json_response, signed
from trust import KeyUse

JWKS_TYP = "ehds-jwks+jws"
KEYSET_KEY = web.AppKey("ehds_hdab_keyset", object)


@dataclass
class PermitKeyEntry:
    kid: str
    file: str
    valid_from: int
    valid_until: int | None = None


@dataclass
class HdabKeySet:
    """Permit keys with their windows, the status key; persisted as ``hdab-keyset.json``."""

    hdab: str
    country: str
    folder: Path
    status_key: trust.SigningKey
    entries: list[PermitKeyEntry] = field(default_factory=list)
    current: trust.SigningKey | None = None
    others: list[dict[str, Any]] = field(default_factory=list)

    # -- persistence ------------------------------------------------------------------
    @classmethod
    def open(cls, hdab: str, country: str, folder: Path, first_key: Path) -> HdabKeySet:
        """Load the key set, or start one whose first permit key is ``first_key``."""
        folder.mkdir(parents=True, exist_ok=True)
        status = trust.SigningKey.load_or_create(folder / "hdab-status.jwk", uses={KeyUse.STATUS})
        keyset = cls(hdab, country, folder, status)
        path = folder / "hdab-keyset.json"
        if path.exists():
            doc = orjson.loads(path.read_bytes())
            keyset.entries = [PermitKeyEntry(**e) for e in doc["keys"]]
            current = doc["current"]
        else:
            first = trust.SigningKey.load(first_key, uses={KeyUse.PERMIT})
            keyset.entries = [PermitKeyEntry(first.kid, str(first_key), 0)]
            current = first.kid
            keyset._save()
        entry = next(e for e in keyset.entries if e.kid == current)
        keyset.current = trust.SigningKey.load(entry.file, uses={KeyUse.PERMIT})
        return keyset

    def _save(self) -> None:
        current = self.current.kid if self.current is not None else self.entries[-1].kid
        doc = {"current": current, "keys": [e.__dict__ for e in self.entries]}
        tmp = self.folder / "hdab-keyset.json.tmp"
        tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        tmp.replace(self.folder / "hdab-keyset.json")

    @property
    def current_kid(self) -> str | None:
        return self.current.kid if self.current is not None else None

    # -- rotation ---------------------------------------------------------------------
    def rotate(self, now: int | None = None) -> trust.SigningKey:
        """A new permit key from ``now``; the current one is retired at ``now``."""
        now = int(time.time()) if now is None else now
        new = trust.SigningKey.generate(uses={KeyUse.PERMIT})
        path = self.folder / f"hdab-permit-{new.kid}.jwk"
        new.save(path)
        for entry in self.entries:
            if entry.valid_until is None:
                entry.valid_until = now
        self.entries.append(PermitKeyEntry(new.kid, str(path), now))
        self.current = new
        self._save()
        return new

    # -- publication ------------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        keys: list[dict[str, Any]] = []
        for entry in self.entries:
            public = trust.SigningKey.load(entry.file, uses={KeyUse.PERMIT}).public
            keys.append(
                {
                    **public.jwk,
                    "kid": entry.kid,
                    "alg": public.alg,
                    "use": "sig",
                    "ehds_uses": [KeyUse.PERMIT.value],
                    "ehds_valid_from": entry.valid_from,
                    "ehds_valid_until": entry.valid_until,
                }
            )
        status = self.status_key.public
        keys.append(
            {
                **status.jwk,
                "kid": status.kid,
                "alg": status.alg,
                "use": "sig",
                "ehds_uses": [KeyUse.STATUS.value],
                "ehds_valid_from": 0,
                "ehds_valid_until": None,
            }
        )
        known = {k["kid"] for k in keys}
        keys.extend(k for k in self.others if k["kid"] not in known)
        return {"hdab": self.hdab, "country": self.country, "keys": keys}

    def signed_jwks(self) -> str:
        """The JWKS signed by the current permit key and the one it replaced (continuity)."""
        signers = [self.current] if self.current is not None else []
        retired = [e for e in self.entries if e.valid_until is not None]
        if retired:
            previous = trust.SigningKey.load(retired[-1].file, uses={KeyUse.PERMIT})
            signers.append(previous)
        payload = trust.canonical_json(self.jwks())
        return trust.sign_general(payload, signers, JWKS_TYP, use=KeyUse.PERMIT)


def open_keyset(config: Any) -> HdabKeySet:
    """The HDAB's key set under ``<data_dir>/keys`` (first permit key: the configured one)."""
    return HdabKeySet.open(
        config.hdab.id, config.hdab.country, config.data_dir / "keys", config.hdab_signing_key
    )


async def get_signed_jwks(request: web.Request) -> web.Response:
    keyset = request.app[KEYSET_KEY]
    assert isinstance(keyset, HdabKeySet)
    return json_response({"token": keyset.signed_jwks()}, headers={"Cache-Control": "no-cache"})


async def post_rotate(request: web.Request) -> web.Response:
    from gateway.hdab_service import HDAB_KEY, JWKS_KEY

    keyset = request.app[KEYSET_KEY]
    assert isinstance(keyset, HdabKeySet)
    new = keyset.rotate()
    request.app[HDAB_KEY].rotate_key(new.jwk)
    request.app[JWKS_KEY][:] = keyset.jwks()["keys"]
    return json_response({"kid": new.kid, "retired": [e.kid for e in keyset.entries[:-1]]})


def key_routes() -> list[RouteSpec]:
    obj: dict[str, Any] = {"type": "object"}
    return [
        RouteSpec(
            "GET",
            "/.well-known/jwks.jws",
            get_signed_jwks,
            "The JWKS signed by the current and the previous permit key (follow rotations)",
            "public",
            response_schema={"type": "object", "properties": {"token": {"type": "string"}}},
        ),
        RouteSpec(
            "POST",
            "/keys/rotate",
            post_rotate,
            "Rotate the permit key: a new key signs from now, the old one is retired",
            "permits",
            **signed("hdab_staff"),
            request_schema=obj,
            response_schema=obj,
        ),
    ]


__all__ = ["JWKS_TYP", "KEYSET_KEY", "HdabKeySet", "key_routes", "open_keyset"]
