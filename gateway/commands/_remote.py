"""What every command that talks to a running service shares: where, with which key, output.

A command names the service's base URL (``--url``, else ``$EHDS_HDAB_URL`` /
``$EHDS_NODE_URL``, else the loopback default) and the private JWK it signs
with (``--key``, else ``$EHDS_CLIENT_KEY``): the same JWK format
``ehds keys generate`` writes and the service's client file lists by
thumbprint. Results print as ``key: value`` lines, or as one JSON value with
``--json``; the service's refusals surface as ``[CODE] message`` (JSON under
``--json``) with a non-zero exit, like any local error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson

from gateway.config import DEFAULT_PORTS
from gateway.errors import ConfigError

Action = Callable[[Any, argparse.Namespace], Coroutine[Any, Any, Any]]


def add_remote_options(parser: argparse.ArgumentParser, service: str) -> None:
    env = f"EHDS_{service.upper()}_URL"
    parser.add_argument(
        "--url",
        default=os.environ.get(env, f"http://127.0.0.1:{DEFAULT_PORTS[service]}"),
        help=f"the {service} service's base URL (default ${env} or loopback)",
    )
    parser.add_argument(
        "--key",
        type=Path,
        default=os.environ.get("EHDS_CLIENT_KEY") or None,
        help="private JWK to sign requests with (default $EHDS_CLIENT_KEY)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON value")


def load_client_key(path: Path | None) -> Any:
    if path is None:
        return None
    import trust

    if not path.exists():
        raise ConfigError(f"client key not found: {path}")
    try:
        # a key without declared uses (``ehds keys generate``) is taken to be for requests
        return trust.SigningKey.load_or_create(path, uses=[trust.KeyUse.REQUEST], create=False).jwk
    except trust.TrustError as exc:
        raise ConfigError(f"client key {path}: {exc}") from None


def read_json(path: Path, what: str) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {what} from {path}: {type(exc).__name__}") from None


def run_remote(args: argparse.Namespace, action: Action) -> Any:
    """Run ``action(client, args)`` against the service; returns what it returns."""
    from gateway.http.client import ServiceClient

    async def go() -> Any:
        async with ServiceClient(args.url, key=load_client_key(args.key)) as client:
            return await action(client, args)

    try:
        return asyncio.run(go())
    except (OSError, TimeoutError) as exc:  # aiohttp connection errors are OSErrors
        raise ConfigError(
            f"cannot reach {args.url}: {type(exc).__name__}", code="SERVICE_UNREACHABLE"
        ) from None


def emit(args: argparse.Namespace, value: Any, *, text: str | None = None) -> int:
    """Print ``value`` as JSON (``--json``) or as readable lines."""
    if getattr(args, "json", False):
        print(orjson.dumps(value).decode())
    elif text is not None:
        print(text)
    elif isinstance(value, dict):
        for k, v in value.items():
            shown = v if isinstance(v, str | int | float) or v is None else orjson.dumps(v).decode()
            print(f"{k}: {shown}")
    else:
        print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.flush()
    return 0


def write_out(path: Path | None, data: bytes) -> None:
    """Write atomically: a site's ClientApp may read the status list at any moment."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def command(
    sub: Any, name: str, service: str, action: Action, help: str, **kw: Any
) -> argparse.ArgumentParser:
    """Add one sub-command that runs ``action`` against the service and prints its result."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help, **kw)
    add_remote_options(parser, service)

    def run(args: argparse.Namespace) -> int:
        result = run_remote(args, action)
        return emit(args, result)

    parser.set_defaults(func=run)
    return parser
