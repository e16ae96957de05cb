"""``ehds node status|dry-run|flower|audit-events``: a hospital gateway's routes from a shell.

Signed with ``--key`` (or ``$EHDS_CLIENT_KEY``) and sent to ``--url`` (or
``$EHDS_NODE_URL``). Every answer is counts and status only, as over HTTP.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.commands._remote import command, read_json


async def _fhir_status(c: Any, a: argparse.Namespace) -> Any:
    return await c.get("/fhir/status")


async def _dry_run(c: Any, a: argparse.Namespace) -> Any:
    return await c.post("/features/dry-run", {"spec": read_json(a.spec, "a feature spec")})


async def _flower(c: Any, a: argparse.Namespace) -> Any:
    return await c.get("/flower/status")


async def _audit_events(c: Any, a: argparse.Namespace) -> Any:
    return await c.get(f"/fhir/AuditEvent?_count={a.count}&_offset={a.offset}")


async def _ready(c: Any, a: argparse.Namespace) -> Any:
    from gateway.http.client import ServiceError

    try:
        return await c.request("GET", "/ready", sign=False)
    except ServiceError as exc:
        raise ServiceError(f"not ready: {exc}", code=exc.code, status=exc.status) from None


def register_node_remote(commands: Any) -> None:
    """Add the node's HTTP operations to ``ehds node``."""
    command(commands, "status", "node", _fhir_status, "the FHIR source's status (signed)")
    command(commands, "ready", "node", _ready, "readiness: every dependency check (public)")
    p = command(commands, "dry-run", "node", _dry_run, "a feature spec's aggregate counts")
    p.add_argument("spec", type=Path, help="feature specification (JSON)")
    command(commands, "flower", "node", _flower, "the supervised SuperNode: state, exit code")
    p = command(commands, "audit-events", "node", _audit_events, "audit log as FHIR AuditEvents")
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)


__all__ = ["register_node_remote"]
