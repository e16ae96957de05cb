"""``ehds node init``: everything a hospital needs to join, written in one folder.

What it writes into ``--dir`` (absolute paths everywhere, so the files work
from any working directory):

* ``node.toml``: the gateway's configuration, with the supervised SuperNode's
  command line under ``[node.flower]``;
* ``keys/audit.jwk``: the site's audit key, one private JWK (``ehds keys``
  format) used by both the gateway and the site's Flower ClientApp, so both
  sign the same log ``<site>:audit``;
* ``keys/operator.jwk`` (+ ``.pub.jwk``) and ``node-clients.jwks.json``: the
  hospital operator's request key, already trusted by the gateway;
* ``keys/supernode.key`` / ``.pub``: the SuperNode's EC P-384 key (OpenSSH),
  the public half to be registered at the SuperLink;
* ``trust-list.json`` and ``status-list.jws``: the HDAB's keys and its newest
  status list, fetched from ``--hdab-url`` (or given as files);
* ``site.json``: the ClientApp's site configuration (FHIR source, permit
  guard, audit sink), named by the SuperNode's ``--node-config``.

It then prints what remains to be done by others: register the SuperNode key
at the SuperLink, keep the status list fresh, trust the researcher's key.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

STATUS_MAX_AGE_HINT = 3600


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is JSON-escaped


def render_toml(tables: dict[str, dict[str, Any]], top: dict[str, Any]) -> str:
    """A small TOML writer: top-level keys, then one ``[table]`` per entry."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def supernode_command(
    *,
    superlink: str,
    site_json: Path,
    node_key: Path,
    root_certificates: Path | None,
) -> list[str]:
    """The ``flower-supernode`` command line (Flower 1.42 flags).

    No ``--isolation``, ``--host`` or ``--port``: the gateway appends them itself
    (its own executor serves the SuperNode's local Runtime API on a port it
    chooses; see :mod:`federation.site_runtime`), and refuses a command that sets them.
    """
    cmd = ["flower-supernode", "--superlink", superlink]
    cmd += ["--root-certificates", str(root_certificates)] if root_certificates else ["--insecure"]
    cmd += ["--auth-supernode-private-key", str(node_key)]
    cmd += ["--node-config", f'site-config="{site_json}"']
    return cmd


def _fetch_hdab(url: str) -> tuple[str, dict[str, Any], str]:
    """(hdab id, JWKS, status list token) from a running HDAB service."""
    import asyncio

    from gateway.http.client import ServiceClient

    async def go() -> tuple[str, dict[str, Any], str]:
        async with ServiceClient(url) as c:
            health = await c.request("GET", "/health", sign=False)
            jwks = await c.request("GET", "/.well-known/jwks.json", sign=False)
            status = await c.request("GET", "/status-list", sign=False)
            return str(health["org"]), jwks, str(status["token"])

    try:
        return asyncio.run(go())
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"cannot reach the HDAB at {url}: {type(exc).__name__}", code="SERVICE_UNREACHABLE"
        ) from None


def trust_list_from_jwks(jwks: dict[str, Any], hdab: str, country: str) -> dict[str, Any]:
    """A data holder's trust list: every key the HDAB publishes, pinned to its algorithm."""
    from permits import TrustList, trusted_key

    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ConfigError("the HDAB's JWKS lists no keys")
    entries = []
    for k in keys:
        declared = k.get("ehds_uses") if isinstance(k, dict) else None
        if declared and not {"permit", "status"} & set(declared):
            continue  # the HDAB's audit key: not trusted for permits
        public = {m: v for m, v in dict(k).items() if m != "ehds_uses"}
        entries.append(
            trusted_key(public, hdab, country, **({"uses": declared} if declared else {}))
        )
    if not entries:
        raise ConfigError("the HDAB's JWKS has no permit-signing key")
    return TrustList(entries).to_dict()


def _write(path: Path, data: str | bytes, *, private: bool = False, force: bool) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)


def init_node(args: argparse.Namespace) -> dict[str, Any]:
    import trust
    from federation.devca import make_node_keys
    from federation.factory import FactoryRef
    from federation.job import SiteConfig
    from gateway.client_keys import KeyRing

    if not trust.is_identifier(args.site):
        raise ConfigError("--site must be an identifier ([A-Za-z0-9._:@-], at most 128)")
    root = Path(args.dir).resolve()
    keys = root / "keys"
    force = bool(args.force)

    if args.hdab_url:
        hdab_id, jwks, status_token = _fetch_hdab(args.hdab_url)
    else:
        if not (args.hdab_jwks and args.hdab_id and args.status_list):
            raise ConfigError("give --hdab-url, or --hdab-jwks, --hdab-id and --status-list")
        hdab_id = args.hdab_id
        jwks = json.loads(Path(args.hdab_jwks).read_text(encoding="utf-8"))
        status_token = Path(args.status_list).read_text(encoding="utf-8").strip()
    trust_list = trust_list_from_jwks(jwks, hdab_id, args.hdab_country)
    _write(root / "trust-list.json", json.dumps(trust_list, indent=2) + "\n", force=force)
    _write(root / "status-list.jws", status_token + "\n", force=force)

    audit_key = trust.SigningKey.generate(uses=[trust.KeyUse.AUDIT])
    _write(keys / "audit.jwk", json.dumps(audit_key.private_jwk()), private=True, force=force)
    operator = trust.SigningKey.generate(uses=[trust.KeyUse.REQUEST])
    _write(keys / "operator.jwk", json.dumps(operator.private_jwk()), private=True, force=force)
    _write(keys / "operator.pub.jwk", json.dumps(operator.public.to_jwk()), force=force)
    ring = KeyRing()
    ring.add(operator.public, org=args.site, roles=["operator"])
    _write(root / "node-clients.jwks.json", json.dumps(ring.to_jwks(), indent=2), force=force)
    if (keys / "supernode.key").exists() and not force:
        raise ConfigError(f"{keys / 'supernode.key'} exists (use --force to overwrite)")
    node_keys = make_node_keys(keys, "supernode")

    audit_db = root / "audit.sqlite"
    log_id = f"{args.site}:audit"
    fhir_path = str(Path(args.fhir).resolve())
    data_kwargs: dict[str, Any] = {"path": fhir_path}
    site = SiteConfig(
        site_id=args.site,
        data=FactoryRef("federation.adapters:fhir_source", data_kwargs),
        authorizer=FactoryRef(
            "federation.adapters:permit_guard",
            {
                "holder": args.site,
                "trust_list": str(root / "trust-list.json"),
                "status_list": str(root / "status-list.jws"),
                "state_db": str(root / "guard.sqlite"),
            },
        ),
        audit=FactoryRef(
            "federation.adapters:signed_log_sink",
            {"db_url": str(audit_db), "key_path": str(keys / "audit.jwk"), "log_id": log_id},
        ),
    )
    site_json = root / "site.json"
    _write(site_json, json.dumps(site.to_dict(), indent=2) + "\n", force=force)

    ca = Path(args.root_certificates).resolve() if args.root_certificates else None
    command = supernode_command(
        superlink=args.superlink,
        site_json=site_json,
        node_key=node_keys.private_key,
        root_certificates=ca,
    )
    fhir_table: dict[str, Any] = {"kind": "ndjson", "path": fhir_path}
    toml = render_toml(
        {
            "server": {"host": "127.0.0.1", "port": args.port},
            "auth": {"clients": str(root / "node-clients.jwks.json")},
            "audit": {"database": str(audit_db), "signing_key": str(keys / "audit.jwk")},
            "node": {"site": args.site},
            "node.fhir": fhir_table,
            "node.flower": {"mode": "run", "superlink": args.superlink, "command": command},
        },
        {"data_dir": str(root)},
    )
    _write(root / "node.toml", toml, force=force)
    return {
        "site": args.site,
        "dir": str(root),
        "config": str(root / "node.toml"),
        "site_config": str(site_json),
        "supernode_public_key": str(node_keys.public_key),
        "operator_key": str(keys / "operator.jwk"),
        "supernode_command": command,
        "next_steps": [
            f"coordinator: flwr supernode register {node_keys.public_key} <connection> "
            f"--name {args.site}",
            f"start: ehds node serve --config {root / 'node.toml'}",
            "keep the status list fresh (every 15 min; data holders refuse one older than "
            f"{STATUS_MAX_AGE_HINT} s): ehds hdab permit status-list --url <hdab-url> "
            f"--out {root / 'status-list.jws'}",
            "to let a researcher run dry runs: ehds node client add --clients "
            f"{root / 'node-clients.jwks.json'} --key researcher.pub.jwk --org <org> "
            "--role data_user (and list data_user in node.dry_run_roles)",
        ],
    }


def _run(args: argparse.Namespace) -> int:
    out = init_node(args)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"wrote {out['config']} and {out['site_config']} for {out['site']}")
    print("SuperNode (started by the gateway): " + " ".join(out["supernode_command"]))
    print("next:")
    for step in out["next_steps"]:
        print(f"  - {step}")
    return 0


def register_node_init(commands: Any) -> None:
    p = commands.add_parser(
        "init",
        help="write node.toml, keys, site.json and the SuperNode command for a new site",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--site", required=True, help="this data holder's identifier")
    p.add_argument("--dir", required=True, type=Path, help="folder to write everything into")
    p.add_argument(
        "--fhir",
        required=True,
        help="FHIR NDJSON folder (Bulk Data output; pull one with `ehds fhir export`)",
    )
    p.add_argument("--superlink", required=True, help="SuperLink Fleet API address host:port")
    p.add_argument("--root-certificates", help="CA certificate of the SuperLink (else insecure)")
    p.add_argument("--hdab-url", help="the HDAB service: JWKS, id and status list from there")
    p.add_argument("--hdab-jwks", help="offline: the HDAB's JWKS file")
    p.add_argument("--hdab-id", help="offline: the HDAB's identifier")
    p.add_argument("--status-list", help="offline: a status list token file")
    p.add_argument("--hdab-country", required=True, help="the HDAB's ISO 3166 country code")
    p.add_argument("--port", type=int, default=8710, help="the gateway's port (default 8710)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


__all__ = ["init_node", "register_node_init", "render_toml", "supernode_command"]
