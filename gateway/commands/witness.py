"""``ehds witness``: run a C2SP tlog-witness alone, or print a witness key.

The HDAB and hospital services serve their witness at ``/witness`` already;
this is for an organisation that runs no other HTTP service (the federated
training coordinator) and for tests and benchmarks::

    ehds witness key   --key coordinator-witness.jwk --name coordinator/witness
    ehds witness serve --db coordinator.sqlite --key coordinator-witness.jwk \\
                       --name coordinator/witness --logs logs.vkeys --port 8445

``serve`` prints one line ``{"url": "http://host:port/witness", "vkey": ...}``
once listening, then runs until SIGTERM/SIGINT. The key file is a private
Ed25519 JWK, created (0600) when absent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any


def _signer_jwk(path: str) -> dict[str, Any]:
    from gateway.witness_wiring import load_witness_key

    return dict(load_witness_key(Path(path)))


def _key(args: argparse.Namespace) -> int:
    from gateway.witness_wiring import witness_signer

    print(witness_signer(args.name, _signer_jwk(args.key)).verifier().vkey())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from audit_chain.storage import LogStore
    from audit_chain.witness import load_vkeys
    from gateway.witness_wiring import witness_app, witness_for

    logs = load_vkeys(Path(args.logs).read_text(encoding="utf-8").splitlines())
    store = LogStore(args.db)
    witness = witness_for(args.name, _signer_jwk(args.key), store, logs)

    async def run() -> None:
        runner = web.AppRunner(witness_app(witness), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://{args.host}:{port}/witness"
        print(json.dumps({"url": url, "vkey": witness.verifier().vkey()}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    finally:
        store.close()
    sys.stdout.flush()
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("witness", help="C2SP transparency-log witness", description=__doc__)
    commands = parser.add_subparsers(dest="witness_command", metavar="COMMAND", required=True)

    key = commands.add_parser("key", help="print the witness's verifier key (vkey)")
    key.add_argument("--key", required=True, help="private Ed25519 JWK file (created if absent)")
    key.add_argument("--name", required=True, help="witness name, e.g. coordinator/witness")
    key.set_defaults(func=_key)

    serve = commands.add_parser("serve", help="serve add-checkpoint until SIGTERM/SIGINT")
    serve.add_argument("--db", required=True, help="SQLite path or PostgreSQL URL (witness state)")
    serve.add_argument("--key", required=True, help="private Ed25519 JWK file (created if absent)")
    serve.add_argument("--name", required=True, help="witness name, e.g. coordinator/witness")
    serve.add_argument(
        "--logs", required=True, help="file of the witnessed logs' verifier keys (vkeys)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port)")
    serve.set_defaults(func=_serve)
