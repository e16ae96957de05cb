"""``ehds hdab client ...`` / ``ehds node client ...``: the file of keys a service knows.

The file is a JWKS of public keys, each with ``ehds_org`` and ``ehds_roles``
(see docs/operators.md). Every change is validated exactly as the service
validates it at start-up (private keys, wrong ``kid``, unknown roles are
refused) and written atomically, so a half-written file never locks everyone out.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from gateway.client_keys import ROLES, KeyRing, client_key
from gateway.errors import ConfigError


def _load(path: Path) -> KeyRing:
    return KeyRing.from_file(path) if path.exists() else KeyRing()


def _write(path: Path, ring: KeyRing) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(ring.to_jwks(), fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def _rows(ring: KeyRing) -> list[dict[str, Any]]:
    return [
        {"kid": k["kid"], "org": k["ehds_org"], "roles": k["ehds_roles"], "alg": k["alg"]}
        for k in ring.to_jwks()["keys"]
    ]


def _add(args: argparse.Namespace) -> int:
    path = _path(args)
    try:
        item = json.loads(Path(args.key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(f"cannot read a JWK from {args.key}") from None
    if not isinstance(item, dict):
        raise ConfigError("the key file must hold one JWK object")
    entry = client_key(item, org=args.org, roles=args.role)
    ring = _load(path)
    ring.add(entry.public, org=entry.org, roles=entry.roles)
    _write(path, ring)
    out = {"kid": entry.kid, "org": entry.org, "roles": sorted(entry.roles), "clients": str(path)}
    print(
        json.dumps(out)
        if args.json
        else f"added {entry.kid} ({entry.org}: {', '.join(sorted(entry.roles))}) to {path}"
    )
    return 0


def _remove(args: argparse.Namespace) -> int:
    path = _path(args)
    ring = _load(path)
    if ring.get(args.kid) is None:
        raise ConfigError(f"no key {args.kid} in {path}")
    kept = KeyRing(
        k for k in (ring.get(r["kid"]) for r in _rows(ring)) if k is not None and k.kid != args.kid
    )
    _write(path, kept)
    print(json.dumps({"removed": args.kid}) if args.json else f"removed {args.kid} from {path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = _rows(_load(_path(args)))
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['kid']}  {r['alg']:<6} {r['org']:<24} {', '.join(r['roles'])}")
        if not rows:
            print("no keys: every signed route answers 401")
    return 0


def _path(args: argparse.Namespace) -> Path:
    if args.clients:
        return Path(args.clients)
    return Path(args.data_dir) / f"{args.service}-clients.jwks.json"


def register_client_commands(commands: Any, service: str) -> None:
    client = commands.add_parser("client", help="manage the public keys this service accepts")
    sub = client.add_subparsers(dest="client_command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--clients",
            help=f"client key file (default: <data-dir>/{service}-clients.jwks.json, what serve reads)",
        )
        p.add_argument("--data-dir", default=".ehds", help="the service's data_dir (default .ehds)")
        p.add_argument("--json", action="store_true", help="print one JSON value")
        p.set_defaults(service=service)

    add = sub.add_parser("add", help="trust a public key for an organisation and role(s)")
    common(add)
    add.add_argument("--key", required=True, help="the client's PUBLIC JWK file")
    add.add_argument("--org", required=True, help="organisation identifier")
    add.add_argument(
        "--role", required=True, action="append", choices=sorted(ROLES), help="repeat for several"
    )
    add.set_defaults(func=_add)
    rm = sub.add_parser("remove", help="stop trusting a key")
    common(rm)
    rm.add_argument("--kid", required=True)
    rm.set_defaults(func=_remove)
    ls = sub.add_parser("list", help="show the trusted keys")
    common(ls)
    ls.set_defaults(func=_list)
