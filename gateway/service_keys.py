"""The service's own private key file(s), loaded or created with the uses the service needs.

One file may serve several purposes (by default the HDAB's permit key is its
audit key), so the uses a key is created with are the union of every purpose
configured to use that file. An existing file keeps the uses it declares; if it
declares fewer than the service needs, startup fails (``CONFIG_INVALID``) rather
than signing with a key outside its use. A file without declared uses (a JWK
supplied by an operator) is taken to be for what the configuration says.
"""

from __future__ import annotations

from pathlib import Path

import trust
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from trust import KeyUse


def uses_for(config: GatewayConfig, path: Path) -> frozenset[KeyUse]:
    """Every use the configuration assigns to the key file at ``path``."""
    uses: set[KeyUse] = set()
    if path == config.audit_signing_key:
        uses.add(KeyUse.AUDIT)
    if config.service == "hdab" and path == config.hdab_signing_key:
        uses |= {KeyUse.PERMIT, KeyUse.STATUS}
    return frozenset(uses or {KeyUse.AUDIT})


def load_service_key(config: GatewayConfig, path: Path, *, create: bool = True) -> trust.SigningKey:
    """Load (or create, mode 0600) the private key at ``path`` declared for its configured uses."""
    needed = uses_for(config, path)
    try:
        return trust.SigningKey.load_or_create(path, uses=needed, create=create)
    except trust.TrustError as exc:
        raise ConfigError(f"signing key {path}: {exc}") from None


__all__ = ["load_service_key", "uses_for"]
