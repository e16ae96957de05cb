"""``verify_log``: re-check a whole log from its entries and say where it first goes wrong.

One streaming pass in index order (constant memory, keyset pagination):

1. every index ``0..size-1`` is present (``AUDIT_MISSING_ENTRY``), nothing is
   stored beyond the head (``AUDIT_UNEXPECTED_ENTRY``);
2. every event verifies against the trust store: signature, pinned algorithm,
   known key, v1 schema, actor = signer (the codes of :mod:`audit_chain.errors`);
3. the leaf hash of the bytes equals the stored leaf node (``AUDIT_LEAF_MISMATCH``)
   and every stored interior node equals the recomputed one (``AUDIT_NODE_MISMATCH``):
   proofs served from storage are then right;
4. at each stored checkpoint's size the recomputed root equals the signed root
   (``AUDIT_ROOT_MISMATCH``; the index is the first entry not covered by an
   earlier matching checkpoint), and every checkpoint is validly signed by a
   key of the log (``AUDIT_BAD_CHECKPOINT`` and signature codes);
5. the log is not shorter than its newest checkpoint or than a checkpoint the
   caller holds (``AUDIT_TRUNCATED``), and agrees with the caller's checkpoints
   (``AUDIT_FORK``; index = size of the newest held checkpoint that still
   matches, i.e. the divergence lies at or after it).

``verify_log(log, trust)`` returns a :class:`VerifyReport`; it raises nothing for
a bad log (only for a database that cannot be read).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from audit_chain import merkle
from audit_chain.checkpoint import Checkpoint, verify_checkpoint
from audit_chain.errors import AuditError
from audit_chain.events import verify_event
from audit_chain.log import AuditLog
from audit_chain.signers import TrustStore

OK = "OK"
MISSING_ENTRY = "AUDIT_MISSING_ENTRY"
UNEXPECTED_ENTRY = "AUDIT_UNEXPECTED_ENTRY"
LEAF_MISMATCH = "AUDIT_LEAF_MISMATCH"
NODE_MISMATCH = "AUDIT_NODE_MISMATCH"
ROOT_MISMATCH = "AUDIT_ROOT_MISMATCH"
TRUNCATED = "AUDIT_TRUNCATED"
FORK = "AUDIT_FORK"
NO_CHECKPOINT = "AUDIT_NO_CHECKPOINT"
BAD_CHECKPOINT = "AUDIT_BAD_CHECKPOINT"


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_log`. ``index``/``reason`` name the first problem found."""

    ok: bool
    log_id: str
    size: int
    entries_checked: int
    root: str | None
    checkpoint_size: int | None
    checkpoint_root: str | None
    index: int | None = None
    reason: str = OK
    message: str = "log verifies"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Failure(Exception):
    def __init__(self, index: int | None, reason: str, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.reason = reason
        self.message = message


def _hex(h: bytes | None) -> str | None:
    return None if h is None else "sha256:" + h.hex()


def verify_log(
    log: AuditLog,
    trust: TrustStore,
    *,
    trusted: Checkpoint | Sequence[Checkpoint] | None = None,
    log_org: str | None = None,
    require_checkpoint: bool = True,
    batch: int = 2000,
) -> VerifyReport:
    """Verify ``log`` end to end against ``trust`` (see the module docstring).

    ``trusted``: checkpoints the caller holds from earlier (e.g.
    ``CheckpointVerifier.history``); they are re-verified and the log must extend
    them. ``log_org``: the organisation whose keys may sign this log's checkpoints;
    pass it. Without it any trusted key may, but all checkpoints must come from
    one organisation.
    """
    held = [trusted] if isinstance(trusted, Checkpoint) else list(trusted or [])
    # Checkpoints first, then the head: appends commit both together and only grow,
    # so on an honest log that is being appended to meanwhile, head >= every checkpoint read.
    stored_rows = log.store.checkpoints(log.log_id)
    size = log.size()
    report = VerifyReport(False, log.log_id, size, 0, None, None, None)
    state = _State()
    try:
        stored_cps = _verified_checkpoints(log.log_id, stored_rows, trust, log_org)
        held_cps = sorted(
            (verify_checkpoint(c.token, trust, origin=log.log_id, log_org=log_org) for c in held),
            key=lambda c: c.size,
        )
        if stored_cps:
            report.checkpoint_size = stored_cps[-1].size
            report.checkpoint_root = _hex(stored_cps[-1].root)
        _stream(log, trust, size, stored_cps, held_cps, state, report, batch)
        report.root = _hex(merkle.frontier_root(state.frontier))
        newest = stored_cps[-1] if stored_cps else None
        if newest is not None and newest.size > size:
            raise _Failure(
                size, TRUNCATED, f"log holds {size} entries but its checkpoint covers {newest.size}"
            )
        if held_cps and held_cps[-1].size > size:
            raise _Failure(
                size,
                TRUNCATED,
                f"log holds {size} entries but you hold a checkpoint of size {held_cps[-1].size}",
            )
        if require_checkpoint and size > 0 and newest is None:
            raise _Failure(None, NO_CHECKPOINT, "log has entries but no signed checkpoint")
    except _Failure as failure:
        report.index, report.reason, report.message = failure.index, failure.reason, failure.message
        return report
    except AuditError as exc:  # a checkpoint the caller holds or the log stores is bad
        report.index, report.reason, report.message = exc.index, exc.code, str(exc)
        return report
    report.ok = True
    covered = report.checkpoint_size or 0
    report.message = (
        f"{size} entries verify; root matches the signed checkpoint of size {covered}"
        + (f" ({size - covered} newer entries not yet checkpointed)" if covered < size else "")
    )
    return report


class _State:
    def __init__(self) -> None:
        self.frontier: dict[int, bytes] = {}
        self.count = 0


def _verified_checkpoints(
    log_id: str, rows: Sequence[tuple[int, bytes, str]], trust: TrustStore, log_org: str | None
) -> list[Checkpoint]:
    out: list[Checkpoint] = []
    for size, root, token in rows:
        try:
            cp = verify_checkpoint(token, trust, origin=log_id, log_org=log_org)
        except AuditError as exc:
            raise _Failure(None, exc.code, f"checkpoint of size {size}: {exc}") from exc
        if log_org is None and out and trust.get(cp.kid).org != trust.get(out[0].kid).org:
            raise _Failure(
                None, BAD_CHECKPOINT, f"checkpoint of size {size} is signed by another organisation"
            )
        if cp.size != size or cp.root != root:
            raise _Failure(
                None,
                BAD_CHECKPOINT,
                f"checkpoint row of size {size} disagrees with its signed payload",
            )
        out.append(cp)
    return out


def _stream(
    log: AuditLog,
    trust: TrustStore,
    size: int,
    stored_cps: Sequence[Checkpoint],
    held_cps: Sequence[Checkpoint],
    state: _State,
    report: VerifyReport,
    batch: int,
) -> None:
    checks: dict[int, list[tuple[str, Checkpoint]]] = {}
    for cp in stored_cps:
        checks.setdefault(cp.size, []).append(("stored", cp))
    for cp in held_cps:
        checks.setdefault(cp.size, []).append(("held", cp))
    last_good_stored = 0
    last_good_held = 0
    if 0 in checks:
        for _, cp in checks[0]:
            if cp.root != merkle.EMPTY_ROOT:
                raise _Failure(0, ROOT_MISMATCH, "checkpoint of size 0 with a non-empty root")
    computed: list[tuple[int, int, bytes]] = []  # recomputed nodes not yet compared
    try:
        for row in log.store.entries(log.log_id, 0, size, batch=batch):
            i = state.count
            if row.index != i:
                raise _Failure(
                    i, MISSING_ENTRY, f"entry {i} is missing (next stored index is {row.index})"
                )
            try:
                verify_event(row.leaf, trust)
            except AuditError as exc:
                raise _Failure(i, exc.code, f"entry {i}: {exc}") from exc
            computed.extend(merkle.extend(i, state.frontier, (merkle.leaf_hash(row.leaf),)))
            state.count = i + 1
            report.entries_checked = state.count
            for kind, cp in checks.get(state.count, ()):
                if merkle.frontier_root(state.frontier) == cp.root:
                    if kind == "stored":
                        last_good_stored = cp.size
                    else:
                        last_good_held = cp.size
                elif kind == "stored":
                    raise _Failure(
                        last_good_stored,
                        ROOT_MISMATCH,
                        f"recomputed root of size {cp.size} differs from its signed checkpoint; "
                        f"entries from {last_good_stored} on are not what was checkpointed",
                    )
                else:
                    raise _Failure(
                        last_good_held,
                        FORK,
                        f"log disagrees with the checkpoint of size {cp.size} you hold: it was "
                        f"rewritten at or after entry {last_good_held}",
                    )
            if len(computed) >= 2 * batch:
                _check_nodes(log, computed)
                computed.clear()
    except _Failure:
        _check_nodes(log, computed)  # a precise leaf/node index beats a later or coarser finding
        raise
    _check_nodes(log, computed)
    if state.count < size:
        raise _Failure(
            state.count, TRUNCATED, f"log head says {size} entries, only {state.count} are stored"
        )
    beyond = log.store.first_entry_beyond_head(log.log_id)  # one statement: one snapshot
    if beyond is not None:
        raise _Failure(beyond, UNEXPECTED_ENTRY, f"entry {beyond} is stored beyond the log's head")


def _check_nodes(log: AuditLog, computed: Iterable[tuple[int, int, bytes]]) -> None:
    """Compare recomputed nodes with stored ones, level by level.

    A changed leaf also changes every node above it, so leaf mismatches are
    reported first (the smallest index); an interior mismatch over intact
    leaves means the node table itself was altered (proofs would be wrong).
    """
    by_level: dict[int, list[tuple[int, bytes]]] = {}
    for level, idx, h in computed:
        by_level.setdefault(level, []).append((idx, h))
    first_bad: dict[int, int] = {}  # level -> first mismatching node index
    for level, items in by_level.items():
        stored = log.store.nodes_in(log.log_id, level, items[0][0], items[-1][0] + 1)
        for idx, h in items:
            if stored.get(idx) != h:
                first_bad[level] = idx
                break
    if 0 in first_bad:
        i = first_bad[0]
        raise _Failure(
            i, LEAF_MISMATCH, f"entry {i}: stored leaf hash does not match the entry bytes"
        )
    if first_bad:
        level, idx = min(first_bad.items(), key=lambda item: item[1] << item[0])
        raise _Failure(
            idx << level,
            NODE_MISMATCH,
            f"stored node (level {level}, index {idx}) does not match entries {idx << level}.."
            f"{((idx + 1) << level) - 1}",
        )


__all__ = [
    "BAD_CHECKPOINT",
    "FORK",
    "LEAF_MISMATCH",
    "MISSING_ENTRY",
    "NODE_MISMATCH",
    "NO_CHECKPOINT",
    "OK",
    "ROOT_MISMATCH",
    "TRUNCATED",
    "UNEXPECTED_ENTRY",
    "VerifyReport",
    "verify_log",
]
