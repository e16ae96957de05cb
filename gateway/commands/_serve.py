"""Shared by ``ehds hdab serve`` and ``ehds node serve``: options, config, run."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.config import GatewayConfig, Service, load_config


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration (default: $EHDS_CONFIG, else built-in defaults)",
    )
    parser.add_argument("--host", help="bind address (overrides [server] host)")
    parser.add_argument("--port", type=int, help="TCP port (overrides [server] port)")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where databases and generated keys live (overrides data_dir)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the start-up line as one JSON object"
    )


def config_from_args(args: argparse.Namespace, service: Service) -> GatewayConfig:
    env = dict(os.environ)
    if args.host:
        env["EHDS_SERVER_HOST"] = args.host
    if args.port is not None:
        env["EHDS_SERVER_PORT"] = str(args.port)
    if args.data_dir:
        env["EHDS_DATA_DIR"] = args.data_dir
    if getattr(args, "fhir", None):
        env["EHDS_NODE_FHIR_PATH"] = args.fhir
    return load_config(args.config, service=service, env=env)


def run_service(
    args: argparse.Namespace,
    service: Service,
    factory: Callable[[GatewayConfig], web.Application],
) -> int:
    from gateway.http.server import serve
    from gateway.logs import configure_logging

    config = config_from_args(args, service)
    configure_logging(access_log=config.server.access_log)
    app = factory(config)

    def announce(host: str, port: int) -> None:
        info: dict[str, Any] = {
            "service": service,
            "org": config.org,
            "url": f"http://{host}:{port}",
            "openapi": f"http://{host}:{port}/openapi.json",
        }
        if service == "hdab":
            info["console"] = f"http://{host}:{port}/console/"  # staff console (docs/console.md)
        if args.json:
            print(orjson.dumps(info).decode(), flush=True)
        else:
            print(
                f"ehds {service} ({config.org}) listening on {info['url']}  (Ctrl-C to stop)",
                flush=True,
            )

    asyncio.run(
        serve(
            app,
            host=config.server.host,
            port=config.port,
            shutdown_timeout=config.server.shutdown_timeout,
            on_ready=announce,
        )
    )
    if not args.json:
        print(f"ehds {service}: stopped", file=sys.stderr)
    return 0
