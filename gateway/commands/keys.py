"""``ehds keys``: signing keys as JWK (Ed25519 by default, or ES256; RS384/ES384 for SMART).

``--alg RS384`` or ``--alg ES384`` makes a SMART Backend Services client key
(what a hospital FHIR server accepts for ``private_key_jwt``); ``ehds keys
jwks KEY`` prints its public JWKS, the document to register with that server.

``kid`` is always the key's RFC 7638 thumbprint, which is what permits bind
authorised persons to and what trust lists index HDAB keys by. Private keys are
written with mode 0600 and never printed unless no ``--out`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from permits import trusted_key
from permits.errors import PermitKeyError
from trust import (
    CLIENT_KEY_ALGS,
    client_jwks,
    client_key_alg,
    generate_client_key,
    load_jwk,
    public_jwk,
    thumbprint,
)
from trust import generate_jwk as generate_key


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="generate and inspect JWK signing keys (Ed25519 default, ES256)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)

    gen = sub.add_parser("generate", help="create a private JWK; prints its RFC 7638 thumbprint")
    gen.add_argument(
        "--alg",
        choices=("EdDSA", "ES256", "RS384", "ES384"),
        default="EdDSA",
        help="EdDSA/ES256 sign permits and audit entries; RS384/ES384 are SMART client keys",
    )
    gen.add_argument("--out", type=Path, help="write the private JWK here (mode 0600)")
    gen.add_argument("--public-out", type=Path, help="also write the public JWK here")
    gen.add_argument("--force", action="store_true", help="overwrite existing files")
    gen.add_argument("--json", action="store_true", help="machine-readable output")
    gen.set_defaults(func=cmd_generate)

    jwks = sub.add_parser(
        "jwks", help="print the public JWKS of SMART client key(s), to register with a FHIR server"
    )
    jwks.add_argument("paths", nargs="+", type=Path, metavar="KEY", help="JWK or JWKS file(s)")
    jwks.add_argument("--out", type=Path, help="write the JWKS here instead of stdout")
    jwks.add_argument("--force", action="store_true", help="overwrite --out")
    jwks.set_defaults(func=cmd_jwks)

    show = sub.add_parser("show", help="print a JWK's thumbprint, algorithm and type")
    show.add_argument("path", type=Path)
    show.add_argument(
        "--trust-entry", action="store_true", help="print a trust-list entry for this key"
    )
    show.add_argument("--hdab", help="HDAB id (with --trust-entry)")
    show.add_argument("--country", help="HDAB country, ISO 3166-1 alpha-2 (with --trust-entry)")
    show.add_argument(
        "--valid-from", type=int, default=0, help="first signing time (with --trust-entry)"
    )
    show.add_argument("--valid-until", type=int, help="last signing time (with --trust-entry)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)


def _write(path: Path, data: bytes, *, private: bool, force: bool) -> None:
    if path.exists() and not force:
        raise PermitKeyError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data + b"\n")
    if private:
        os.chmod(path, 0o600)


def cmd_generate(args: argparse.Namespace) -> int:
    is_client = args.alg in CLIENT_KEY_ALGS
    key = generate_client_key(args.alg) if is_client else generate_key(args.alg)
    kid = thumbprint(key)
    private = orjson.dumps(key.export_private(as_dict=True), option=orjson.OPT_SORT_KEYS)
    public = client_jwks([key])["keys"][0] if is_client else public_jwk(key)
    if args.out:
        _write(args.out, private, private=True, force=args.force)
    if args.public_out:
        _write(
            args.public_out,
            orjson.dumps(public, option=orjson.OPT_SORT_KEYS),
            private=False,
            force=args.force,
        )
    if args.json:
        out: dict[str, Any] = {"kid": kid, "thumbprint": kid, "alg": args.alg, "public_jwk": public}
        if args.out:
            out["path"] = str(args.out)
        else:
            out["private_jwk"] = orjson.loads(private)
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
    elif args.out:
        print(kid)
    else:
        sys.stdout.write(private.decode() + "\n")
        print(f"kid (RFC 7638 thumbprint): {kid}", file=sys.stderr)
    return 0


def _read_keys(path: Path) -> list[Any]:
    """The key(s) of a JWK or JWKS file, checked to be SMART client keys."""
    from jwcrypto import jwk

    try:
        data = orjson.loads(path.read_bytes())
        items = data["keys"] if isinstance(data, dict) and "keys" in data else [data]
        keys = [jwk.JWK(**item) for item in items]
    except (OSError, orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise PermitKeyError(f"{path.name} is not a readable JWK or JWKS file") from exc
    except Exception as exc:  # jwcrypto raises several types for bad keys
        raise PermitKeyError(f"{path.name} does not hold a valid JWK") from exc
    for key in keys:
        client_key_alg(key)
    return keys


def cmd_jwks(args: argparse.Namespace) -> int:
    keys = [key for path in args.paths for key in _read_keys(path)]
    document = orjson.dumps(client_jwks(keys), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    if args.out:
        _write(args.out, document, private=False, force=args.force)
        print(f"{len(keys)} public key(s) written to {args.out}")
    else:
        sys.stdout.write(document.decode() + "\n")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    raw = orjson.loads(args.path.read_bytes()) if args.path.exists() else {}
    if isinstance(raw, dict) and (raw.get("kty") == "RSA" or raw.get("crv") == "P-384"):
        key = _read_keys(args.path)[0]
        public = client_jwks([key])["keys"][0]
    else:
        key = load_jwk(args.path)
        public = public_jwk(key)
    kid = thumbprint(key)
    info: dict[str, Any] = {
        "kid": kid,
        "thumbprint": kid,
        "alg": public["alg"],
        "kty": key.get("kty"),
        "crv": key.get("crv"),
        "private": bool(key.has_private),
        "public_jwk": public,
    }
    if args.trust_entry:
        if not args.hdab or not args.country:
            raise PermitKeyError("--trust-entry needs --hdab and --country")
        entry = trusted_key(
            key, args.hdab, args.country, valid_from=args.valid_from, valid_until=args.valid_until
        )
        sys.stdout.write(orjson.dumps(entry.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if args.json:
        sys.stdout.write(orjson.dumps(info).decode() + "\n")
    else:
        for name in ("kid", "alg", "kty", "crv", "private"):
            print(f"{name}: {info[name]}")
    return 0
