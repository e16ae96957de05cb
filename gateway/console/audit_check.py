"""What the audit explorer computes: filters over entries, an inclusion proof, a full verification.

Pure functions over what the service's audit view returns, plus :func:`verify_audit`,
which re-checks the whole log the way an outside auditor would: with the stored
database it is ``audit_chain.verify_log`` (every signature, every stored node,
every checkpoint); with an in-memory log it re-verifies every event and recomputes
the root against the signed checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit_chain import TrustStore, verify_event, verify_inclusion, verify_log
from audit_chain.checkpoint import parse_root, verify_checkpoint
from audit_chain.errors import AuditError
from audit_chain.merkle import MemoryNodes, leaf_hash, root_hash
from gateway.audit_wiring import AuditComponents


@dataclass(frozen=True)
class AuditFilter:
    """Entries whose type starts with ``type`` and whose subject has ``key`` = ``value``."""

    type: str = ""
    key: str = ""
    value: str = ""

    def matches(self, payload: Mapping[str, Any]) -> bool:
        if self.type and not str(payload.get("type", "")).startswith(self.type):
            return False
        if self.key:
            subject = payload.get("subject") or {}
            if self.key not in subject:
                return False
            if self.value and str(subject[self.key]) != self.value:
                return False
        return True


def select_entries(
    entries: Iterable[Mapping[str, Any]], flt: AuditFilter
) -> list[Mapping[str, Any]]:
    return [e for e in entries if flt.matches(e.get("payload") or {})]


@dataclass(frozen=True)
class ProofResult:
    index: int
    tree_size: int
    leaf_hash: str
    root: str
    path: tuple[str, ...]
    ok: bool
    message: str


def check_inclusion(
    index: int, tree_size: int, leaf: bytes, path: Sequence[bytes], root: str, event: str
) -> ProofResult:
    """Does the entry's own bytes hash to ``leaf``, and does the path lead to the signed root?"""
    hexpath = tuple(h.hex() for h in path)
    if leaf_hash(event.encode()) != leaf:
        return ProofResult(index, tree_size, leaf.hex(), root, hexpath, False, "leaf hash differs")
    try:
        verify_inclusion(leaf, index, tree_size, list(path), parse_root(root))
    except AuditError as exc:
        return ProofResult(index, tree_size, leaf.hex(), root, hexpath, False, exc.code)
    return ProofResult(
        index,
        tree_size,
        leaf.hex(),
        root,
        hexpath,
        True,
        f"entry {index} is in the log of size {tree_size} under the signed root",
    )


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    size: int
    reason: str
    index: int | None
    message: str


def trust_for(components: AuditComponents, org: str) -> TrustStore:
    trust = TrustStore()
    for jwk in components.public_keys:
        trust.add(org, jwk)
    return trust


def verify_audit(components: AuditComponents, org: str) -> VerifyResult:
    """Verify the service's whole log (synchronous: run it on the database thread)."""
    trust = trust_for(components, org)
    backend: Any = components.view.backend
    log = getattr(backend, "log", None)
    if log is not None:
        report = verify_log(log, trust, log_org=org)
        return VerifyResult(report.ok, report.size, report.reason, report.index, report.message)
    return _verify_by_entries(backend, trust, org)


def _verify_by_entries(backend: Any, trust: TrustStore, org: str) -> VerifyResult:
    checkpoint = backend.checkpoint()
    size = int(checkpoint["size"])
    nodes = MemoryNodes()
    try:
        signed = verify_checkpoint(checkpoint["note"], trust, log_org=org)
        for start in range(0, size, 1000):
            batch = backend.entries(start, min(size, start + 1000))
            for entry in batch:
                try:
                    verify_event(entry["event"], trust)
                except AuditError as exc:
                    return VerifyResult(False, size, exc.code, int(entry["index"]), str(exc))
            nodes.append([leaf_hash(str(e["event"]).encode()) for e in batch])
    except AuditError as exc:
        return VerifyResult(False, size, exc.code, None, str(exc))
    if signed.size != size or root_hash(size, nodes) != signed.root:
        return VerifyResult(
            False, size, "AUDIT_ROOT_MISMATCH", None, "root differs from checkpoint"
        )
    return VerifyResult(True, size, "OK", None, f"{size} entries verify against the signed root")


def newest_cosignatures(components: AuditComponents) -> list[tuple[str, int, int]]:
    """(witness, tree size, timestamp) of each witness's newest cosignature of this log.

    Empty when no witness has cosigned (or the log is in memory). Synchronous: run it
    on the database thread.
    """
    log = getattr(components.view.backend, "log", None)
    if log is None:
        return []
    newest: dict[str, tuple[int, int]] = {}
    for size, witness, timestamp, _line in log.store.cosignatures(log.log_id):
        if witness not in newest or size >= newest[witness][0]:
            newest[witness] = (size, timestamp)
    return sorted((w, s, t) for w, (s, t) in newest.items())


__all__ = [
    "AuditFilter",
    "ProofResult",
    "VerifyResult",
    "check_inclusion",
    "newest_cosignatures",
    "select_entries",
    "trust_for",
    "verify_audit",
]
