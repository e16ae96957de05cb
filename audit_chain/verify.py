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
   matches, i.e. the divergence lies at or after it);
6. every event names this log and its own index (``AUDIT_MISPLACED_EVENT``: a
   copy of a valid event elsewhere), and the side columns ``type``/``org``/``time``
   equal the signed leaf (``AUDIT_SIDE_COLUMN``);
7. nothing lies beyond the newest signed checkpoint (``AUDIT_UNCHECKPOINTED``):
   a signing log writes entries and their checkpoint in one transaction;
8. with a :class:`WitnessPolicy`: every cosignature of a trusted witness (from
   the log's own table and from what the witnesses hold) must match the log --
   a size beyond the log is ``AUDIT_TRUNCATED``, another root at a size is
   ``AUDIT_FORK`` -- and the entries count as verified only up to the newest
   size cosigned by ``quorum`` witnesses (``verified_size``); without any such
   checkpoint a non-empty log fails with ``AUDIT_NO_QUORUM``.

``verify_log(log, trust)`` returns a :class:`VerifyReport`; it raises nothing for
a bad log (only for a database that cannot be read).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from audit_chain import merkle
from audit_chain.checkpoint import Checkpoint, verify_checkpoint
from audit_chain.errors import AuditError
from audit_chain.events import verify_event
from audit_chain.log import AuditLog
from audit_chain.note import (
    NoteVerifier,
    checkpoint_body,
    find_cosignatures,
    parse_checkpoint_body,
    parse_note,
    parse_signature_lines,
)
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
MISPLACED = "AUDIT_MISPLACED_EVENT"
SIDE_COLUMN = "AUDIT_SIDE_COLUMN"
UNCHECKPOINTED = "AUDIT_UNCHECKPOINTED"
NO_QUORUM = "AUDIT_NO_QUORUM"


@dataclass(frozen=True)
class WitnessPolicy:
    """Which witnesses the verifier trusts (cosignature/v1 vkeys) and how many must agree.

    ``notes``: checkpoints with cosignatures obtained from the witnesses
    themselves (their ``/witness/checkpoint`` or their database): what the log's
    operator cannot delete. The log's own ``audit_cosignature`` table is read too.
    """

    witnesses: tuple[NoteVerifier, ...]
    quorum: int
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.quorum <= len(self.witnesses):
            raise ValueError("quorum must be between 1 and the number of trusted witnesses")


@dataclass(frozen=True)
class _Claim:
    witness: str
    size: int
    root: bytes


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
    verified_size: int | None = None
    quorum: int | None = None
    cosigned: dict[str, int] = field(default_factory=dict)

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
    witnesses: WitnessPolicy | None = None,
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
    newest_read = stored_rows[-1][0] if stored_rows else 0
    if newest_read < size:  # an append committed in between: read the checkpoints it added
        stored_rows += [
            r for r in log.store.checkpoints(log.log_id, since=newest_read + 1) if r[0] <= size
        ]
    report = VerifyReport(False, log.log_id, size, 0, None, None, None)
    state = _State()
    try:
        stored_cps = _verified_checkpoints(log.log_id, stored_rows, trust, log_org)
        held_cps = sorted(
            (verify_checkpoint(c.token, trust, origin=log.log_id, log_org=log_org) for c in held),
            key=lambda c: c.size,
        )
        claims = _witness_claims(log, witnesses) if witnesses is not None else []
        if stored_cps:
            report.checkpoint_size = stored_cps[-1].size
            report.checkpoint_root = _hex(stored_cps[-1].root)
        for claim in claims:
            report.cosigned[claim.witness] = max(report.cosigned.get(claim.witness, 0), claim.size)
        beyond = [c for c in claims if c.size > size]
        if beyond:
            worst = max(beyond, key=lambda c: c.size)
            raise _Failure(
                size,
                TRUNCATED,
                f"log holds {size} entries but witness {worst.witness} cosigned size {worst.size}: "
                "entries were removed",
            )
        _stream(log, trust, size, stored_cps, held_cps, claims, state, report, batch)
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
        if require_checkpoint and newest is not None and newest.size < size:
            raise _Failure(
                newest.size,
                UNCHECKPOINTED,
                f"entries {newest.size}..{size - 1} lie beyond the newest signed checkpoint "
                f"(size {newest.size}): the log signs every append, so they were added behind its back",
            )
        if witnesses is not None:
            report.quorum = witnesses.quorum
            report.verified_size = _quorum_size(report.cosigned, witnesses.quorum)
            if size > 0 and report.verified_size == 0:
                raise _Failure(
                    0,
                    NO_QUORUM,
                    f"no checkpoint is cosigned by {witnesses.quorum} trusted witnesses "
                    f"(cosigned sizes: {report.cosigned or 'none'})",
                )
    except _Failure as failure:
        report.index, report.reason, report.message = failure.index, failure.reason, failure.message
        return report
    except AuditError as exc:  # a checkpoint the caller holds or the log stores is bad
        report.index, report.reason, report.message = exc.index, exc.code, str(exc)
        return report
    report.ok = True
    covered = report.checkpoint_size or 0
    if report.verified_size is None:
        report.verified_size = covered
        report.message = (
            f"{size} entries verify; root matches the signed checkpoint of size {covered}"
        )
    else:
        pending = size - report.verified_size
        report.message = (
            f"{report.verified_size} entries verify under a checkpoint cosigned by "
            f"{report.quorum} trusted witnesses"
            + (
                f"; the {pending} newer entries are signed by the log but NOT yet witnessed "
                "(not verified)"
                if pending
                else ""
            )
        )
    return report


def _quorum_size(cosigned: dict[str, int], quorum: int) -> int:
    """Largest size cosigned by at least ``quorum`` witnesses (all claims already matched the log)."""
    sizes = sorted(cosigned.values(), reverse=True)
    return sizes[quorum - 1] if len(sizes) >= quorum else 0


def _witness_claims(log: AuditLog, policy: WitnessPolicy) -> list[_Claim]:
    """Every valid cosignature of a trusted witness on a checkpoint of this log."""
    claims: list[_Claim] = []
    by_size = {s: r for s, r, _ in log.store.checkpoints(log.log_id)}
    for size, _witness, _ts, line in log.store.cosignatures(log.log_id):
        root = by_size.get(size)
        if root is None:
            continue  # its checkpoint row is gone; the witnesses' own copies still count
        body = checkpoint_body(log.log_id, size, root)
        try:
            found = find_cosignatures(body, parse_signature_lines(line), policy.witnesses)
        except AuditError:
            continue  # a stored line that does not verify vouches for nothing
        claims += [_Claim(c.witness, size, root) for c in found]
    for note in policy.notes:
        parsed = parse_note(note)
        origin, size, root = parse_checkpoint_body(parsed.text)
        if origin != log.log_id:
            continue
        found = find_cosignatures(parsed.text, parsed.signatures, policy.witnesses)
        claims += [_Claim(c.witness, size, root) for c in found]
    return claims


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
        if log_org is None and out and trust.get(str(cp.kid)).org != trust.get(str(out[0].kid)).org:
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
    claims: Sequence[_Claim],
    state: _State,
    report: VerifyReport,
    batch: int,
) -> None:
    checks: dict[int, list[tuple[str, Checkpoint | _Claim]]] = {}
    cp: Checkpoint | _Claim
    for cp in stored_cps:
        checks.setdefault(cp.size, []).append(("stored", cp))
    for cp in held_cps:
        checks.setdefault(cp.size, []).append(("held", cp))
    for claim in claims:
        checks.setdefault(claim.size, []).append(("witness", claim))
    last_good_stored = 0
    last_good_held = 0
    if 0 in checks:
        for _, zero in checks[0]:
            if zero.root != merkle.EMPTY_ROOT:
                raise _Failure(0, ROOT_MISMATCH, "checkpoint of size 0 with a non-empty root")
    origin = log.log_id
    side_bad: int | None = None  # reported last: every cryptographic finding comes first
    computed: list[tuple[int, int, bytes]] = []  # recomputed nodes not yet compared
    try:
        for row in log.store.entries(log.log_id, 0, size, batch=batch):
            i = state.count
            if row.index != i:
                raise _Failure(
                    i, MISSING_ENTRY, f"entry {i} is missing (next stored index is {row.index})"
                )
            try:
                event = verify_event(row.leaf, trust).event
            except AuditError as exc:
                raise _Failure(i, exc.code, f"entry {i}: {exc}") from exc
            computed.extend(merkle.extend(i, state.frontier, (merkle.leaf_hash(row.leaf),)))
            # after the leaf hash is queued: on failure, a stored-leaf mismatch is named first
            if event.origin != origin or event.index != i:
                raise _Failure(
                    i,
                    MISPLACED,
                    f"entry {i} was signed for index {event.index} of log {event.origin!r}: "
                    "a copy of an event from elsewhere",
                )
            if side_bad is None and (row.type, row.org, row.time) != (
                event.type,
                event.org,
                event.time,
            ):
                side_bad = i
            state.count = i + 1
            report.entries_checked = state.count
            for kind, cp in checks.get(state.count, ()):
                if merkle.frontier_root(state.frontier) == cp.root:
                    if kind == "stored":
                        last_good_stored = cp.size
                    else:
                        last_good_held = cp.size
                elif isinstance(cp, _Claim):
                    raise _Failure(
                        last_good_held,
                        FORK,
                        f"witness {cp.witness} cosigned size {cp.size} with another root: the log "
                        f"was rewritten or showed a forked history (it matches up to size "
                        f"{last_good_held})",
                    )
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
    if side_bad is not None:
        raise _Failure(
            side_bad,
            SIDE_COLUMN,
            f"entry {side_bad}: the type/org/time columns differ from the signed leaf",
        )


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
    "MISPLACED",
    "MISSING_ENTRY",
    "NODE_MISMATCH",
    "NO_CHECKPOINT",
    "NO_QUORUM",
    "OK",
    "ROOT_MISMATCH",
    "SIDE_COLUMN",
    "TRUNCATED",
    "UNCHECKPOINTED",
    "UNEXPECTED_ENTRY",
    "VerifyReport",
    "WitnessPolicy",
    "verify_log",
]
