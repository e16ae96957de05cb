"""Opening a service's audit log from its configuration.

``open_audit(config)`` returns :class:`~gateway.audit_wiring.AuditComponents`
for the configured database. :class:`MemoryAuditLog` is an ephemeral log
built from ``audit_chain``'s primitives (signed events, RFC 9162 tree, signed
checkpoints); it backs ``database = ":memory:"`` for tests and throwaway runs
and is the reference the database-backed adapter is checked against.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from audit_chain import EventSigner, merkle
from audit_chain.checkpoint import sign_checkpoint
from audit_chain.events import parse_event, sign_event
from gateway.audit_view import ThreadedAuditView
from gateway.audit_wiring import AuditComponents, AuditEventExport
from gateway.config import GatewayConfig
from gateway.service_keys import load_service_key


def entry_json(index: int, token: str) -> dict[str, Any]:
    """One log entry as served over HTTP: index, leaf hash (hex), the JWS and its payload."""
    data = token.encode()
    return {
        "index": index,
        "leaf_hash": merkle.leaf_hash(data).hex(),
        "event": token,
        "payload": parse_event(token).to_payload(),
    }


class MemoryAuditLog:
    """An append-only signed log in memory: sink and backend in one (thread-safe)."""

    def __init__(self, signer: EventSigner, origin: str) -> None:
        self.signer = signer
        self.origin = origin
        self._lock = threading.Lock()
        self._tokens: list[str] = []
        self._nodes = merkle.MemoryNodes()

    # AuditSink
    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        with self._lock:
            index = len(self._tokens)
            token = sign_event(
                self.signer, type, subject=subject, details=details, origin=self.origin, index=index
            )
            self._tokens.append(token)
            self._nodes.append([merkle.leaf_hash(token.encode())])

    # AuditBackend
    def tree_size(self) -> int:
        return len(self._tokens)

    def checkpoint(self) -> dict[str, Any]:
        with self._lock:
            size = len(self._tokens)
            root = merkle.root_hash(size, self._nodes) if size else merkle.EMPTY_ROOT
        return sign_checkpoint(self.signer, self.origin, size, root).to_json()

    def entries(self, start: int, end: int) -> list[dict[str, Any]]:
        with self._lock:
            tokens = self._tokens[start:end]
        return [entry_json(start + i, t) for i, t in enumerate(tokens)]

    def inclusion(self, index: int, tree_size: int) -> list[bytes]:
        return merkle.inclusion_proof(index, tree_size, self._nodes)

    def consistency(self, first: int, second: int) -> list[bytes]:
        return merkle.consistency_proof(first, second, self._nodes)

    def leaf_hash(self, index: int) -> bytes:
        return merkle.leaf_hash(self._tokens[index].encode())

    def get_nodes(self, ids: Collection[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
        return self._nodes.get_nodes(ids)


def fhir_exporter(log_id: str) -> AuditEventExport:
    """Entries as served over HTTP -> FHIR R4 AuditEvent JSON (``audit_chain.fhir_export``)."""
    from audit_chain.fhir_export import audit_event_json
    from audit_chain.log import Entry

    def export(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for item in entries:
            token = str(item["event"])
            event = parse_event(token)
            entry = Entry(int(item["index"]), token, event.type, event.org, event.time)
            out.append(audit_event_json(entry, event, log_id))
        return out

    return export


def signer_for(config: GatewayConfig) -> EventSigner:
    return EventSigner(config.org, load_service_key(config, config.audit_signing_key))


def open_audit(config: GatewayConfig) -> AuditComponents:
    """The audit log named by ``config.audit_database`` (``:memory:`` = ephemeral)."""
    signer = signer_for(config)
    if config.audit_database == ":memory:":
        from audit_chain.storage import LogStore
        from gateway.witness_wiring import open_witness

        log = MemoryAuditLog(signer, config.audit_origin)
        witness_store = LogStore("sqlite:///:memory:")
        return AuditComponents(
            view=ThreadedAuditView(log),
            sink=log,
            to_fhir=fhir_exporter(config.audit_origin),
            public_keys=[signer.public_jwk()],
            closers=[witness_store.close],
            witness=open_witness(config, witness_store),
        )
    return _open_stored(config, signer)


def _open_stored(config: GatewayConfig, signer: EventSigner) -> AuditComponents:
    # Adapter to audit_chain's SQLModel store; see gateway.audit_store.
    from gateway.audit_store import open_stored_audit

    return open_stored_audit(config, signer)


__all__ = ["MemoryAuditLog", "entry_json", "fhir_exporter", "open_audit", "signer_for"]
