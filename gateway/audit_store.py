"""Adapter from ``audit_chain.log.AuditLog`` (SQLite or PostgreSQL) to the service's needs.

The service's log id is its configured origin; checkpoints are signed with
the service's audit key on every append (``AuditLog`` does that in the append
transaction), so ``/audit/checkpoint`` always covers everything written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from audit_chain import EventSigner
from audit_chain.log import AuditLog
from audit_chain.merkle import NodeId
from audit_chain.sink import SignedLogSink
from gateway.audit_backend import entry_json, fhir_exporter
from gateway.audit_view import ThreadedAuditView
from gateway.audit_wiring import AuditComponents
from gateway.config import GatewayConfig


class LogBackend:
    """``AuditBackend`` over an :class:`AuditLog`."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def tree_size(self) -> int:
        return self.log.size()

    def checkpoint(self) -> dict[str, Any]:
        return self.log.checkpoint().to_json()

    def entries(self, start: int, end: int) -> list[dict[str, Any]]:
        return [entry_json(e.index, e.token) for e in self.log.entries(start, end)]

    def inclusion(self, index: int, tree_size: int) -> list[bytes]:
        return self.log.inclusion_proof(index, tree_size)

    def consistency(self, first: int, second: int) -> list[bytes]:
        return self.log.consistency_proof(first, second)

    def leaf_hash(self, index: int) -> bytes:
        return self.log.entry(index).leaf_hash

    def get_nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        return self.log.get_nodes(ids)


def database_url(value: str) -> str:
    """A bare path is SQLite at that path; its folder is created."""
    if "://" in value:
        return value
    path = Path(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def open_stored_audit(config: GatewayConfig, signer: EventSigner) -> AuditComponents:
    """The log, its witness (same database) and, if configured, the witnessing of the log."""
    from gateway.witness_wiring import open_witness, start_witnessing

    log = AuditLog.open(
        database_url(config.audit_database), log_id=config.audit_origin, signer=signer
    )
    witnessing = start_witnessing(config, log)
    closers = [log.close] if witnessing is None else [witnessing.close, log.close]
    return AuditComponents(
        view=ThreadedAuditView(LogBackend(log)),
        sink=SignedLogSink(log, signer),
        to_fhir=fhir_exporter(config.audit_origin),
        public_keys=[signer.public_jwk()],
        closers=closers,
        witness=open_witness(config, log.store),
    )


__all__ = ["LogBackend", "database_url", "open_stored_audit"]
