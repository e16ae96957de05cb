"""``ehds node serve``: run the hospital gateway (FHIR status, dry runs, audit log, SuperNode)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.commands._clients import register_client_commands
from gateway.commands._serve import add_serve_options, run_service


def _serve(args: argparse.Namespace) -> int:
    from gateway.node_service import create_node_app

    return run_service(args, "node", create_node_app)


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "node", help="hospital gateway (data holder) service", description=__doc__
    )
    commands = parser.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the hospital gateway HTTP service",
        description="Run the hospital gateway until SIGTERM/SIGINT. Configuration: --config FILE, then "
        "EHDS_* environment variables, then these options (see docs/operators.md).",
    )
    add_serve_options(serve)
    serve.add_argument(
        "--fhir",
        metavar="PATH",
        help="FHIR NDJSON/Bundle file or folder (overrides [node.fhir] path)",
    )
    serve.set_defaults(func=_serve)
    register_client_commands(commands, "node")
    from gateway.commands.node_remote import register_node_remote

    register_node_remote(commands)
    from gateway.commands.node_init import register_node_init

    register_node_init(commands)
