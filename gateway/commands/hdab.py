"""``ehds hdab serve``: run the HDAB service (permits, register, JWKS, status list, audit log)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.commands._clients import register_client_commands
from gateway.commands._serve import add_serve_options, run_service


def _serve(args: argparse.Namespace) -> int:
    from gateway.hdab_service import create_hdab_app

    return run_service(args, "hdab", create_hdab_app)


def register(sub: Any) -> None:
    parser = sub.add_parser("hdab", help="health data access body service", description=__doc__)
    commands = parser.add_subparsers(dest="hdab_command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the HDAB HTTP service",
        description="Run the HDAB service until SIGTERM/SIGINT. Configuration: --config FILE, then "
        "EHDS_* environment variables, then these options (see docs/operators.md).",
    )
    add_serve_options(serve)
    serve.set_defaults(func=_serve)
    register_client_commands(commands, "hdab")
    from gateway.commands.hdab_staff import register_staff_commands

    register_staff_commands(commands)

    from gateway.commands.hdab_remote import register_hdab_remote

    register_hdab_remote(commands)
