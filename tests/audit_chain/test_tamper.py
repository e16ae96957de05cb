"""Tampering with the stored log is detected with the right index and reason (SQLite, PostgreSQL).

The attacker here has write access to the database (an insider or a stolen
backup). Cases: a changed leaf byte, a replaced event, a deleted entry, two
swapped entries (with and without rewriting the tree nodes), a truncated tail
(with and without the checkpoints), and a forked history served to a client
that holds older checkpoints.
"""

from __future__ import annotations

import pytest
from sqlalchemy import and_, delete, select, update

from audit_chain import EventSigner, TrustStore, merkle
from audit_chain.checkpoint import CheckpointVerifier
from audit_chain.errors import AuditForkError, AuditRollbackError
from audit_chain.events import sign_event
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.storage import CHECKPOINTS, ENTRIES, HEADS, NODES
from audit_chain.verify import verify_log
from tests.audit_chain.conftest import LOG_ID

N = 12


@pytest.fixture
def filled(log: AuditLog, sink: SignedLogSink, trust: TrustStore) -> AuditLog:
    for i in range(N):  # one transaction (and checkpoint) per event
        sink.record(
            "training.round", subject={"job": "job-1"}, details={"round": i, "rows": 100 + i}
        )
    assert verify_log(log, trust).ok
    return log


def _exec(log: AuditLog, *statements: object) -> None:
    with log.store.engine.begin() as conn:
        for st in statements:
            conn.execute(st)  # type: ignore[call-overload]


def _leaf(log: AuditLog, i: int) -> bytes:
    with log.store.engine.connect() as conn:
        return bytes(
            conn.execute(
                select(ENTRIES.c.leaf).where(and_(ENTRIES.c.log_id == LOG_ID, ENTRIES.c.idx == i))
            ).scalar_one()
        )


def _set_leaf(i: int, leaf: bytes) -> object:
    return (
        update(ENTRIES)
        .where(and_(ENTRIES.c.log_id == LOG_ID, ENTRIES.c.idx == i))
        .values(leaf=leaf)
    )


def _rewrite_nodes(log: AuditLog) -> None:
    """The careful attacker: recompute the whole node table from the (tampered) entries."""
    store = merkle.MemoryNodes()
    store.append(merkle.leaf_hash(e.leaf) for e in log.entries())
    _exec(log, delete(NODES).where(NODES.c.log_id == LOG_ID))
    with log.store.engine.begin() as conn:
        conn.execute(
            NODES.insert(),
            [
                {"log_id": LOG_ID, "level": lv, "idx": ix, "hash": h}
                for (lv, ix), h in store.nodes.items()
            ],
        )


def assert_caught(log: AuditLog, trust: TrustStore, index: int, reason: str, **kw: object) -> None:
    report = verify_log(log, trust, **kw)  # type: ignore[arg-type]
    assert not report.ok
    assert (report.index, report.reason) == (index, reason), report.message


def test_changed_leaf_byte(filled: AuditLog, trust: TrustStore) -> None:
    leaf = bytearray(_leaf(filled, 5))
    pos = leaf.index(b".") + 20  # a byte inside the signed payload
    leaf[pos] = ord("B") if leaf[pos] != ord("B") else ord("C")
    _exec(filled, _set_leaf(5, bytes(leaf)))
    assert_caught(filled, trust, 5, "AUDIT_BAD_SIGNATURE")


def test_replaced_by_another_validly_signed_event(
    filled: AuditLog, trust: TrustStore, actor: EventSigner
) -> None:
    other = sign_event(  # signed for exactly this position: only the tree can tell
        actor,
        "training.round",
        subject={"job": "job-1"},
        details={"round": 7, "rows": 1},
        origin=LOG_ID,
        index=7,
    )
    _exec(filled, _set_leaf(7, other.encode()))
    assert_caught(filled, trust, 7, "AUDIT_LEAF_MISMATCH")


def test_deleted_entry(filled: AuditLog, trust: TrustStore) -> None:
    _exec(filled, delete(ENTRIES).where(and_(ENTRIES.c.log_id == LOG_ID, ENTRIES.c.idx == 4)))
    assert_caught(filled, trust, 4, "AUDIT_MISSING_ENTRY")


def test_deleted_entry_and_renumbered(filled: AuditLog, trust: TrustStore) -> None:
    leaves = [_leaf(filled, i) for i in range(N)]
    del leaves[4]
    _exec(filled, delete(ENTRIES).where(ENTRIES.c.log_id == LOG_ID))
    with filled.store.engine.begin() as conn:
        conn.execute(
            ENTRIES.insert(),
            [
                {
                    "log_id": LOG_ID,
                    "idx": i,
                    "leaf": b,
                    "type": "training.round",
                    "org": "hdab-nl",
                    "time": "x",
                }
                for i, b in enumerate(leaves)
            ],
        )
    assert_caught(filled, trust, 4, "AUDIT_LEAF_MISMATCH")
    _rewrite_nodes(filled)  # each event names its index: entry 5 moved to 4 fails there
    _exec(filled, update(HEADS).where(HEADS.c.log_id == LOG_ID).values(size=N - 1))
    assert_caught(filled, trust, 4, "AUDIT_MISPLACED_EVENT")


def test_swapped_entries(filled: AuditLog, trust: TrustStore) -> None:
    a, b = _leaf(filled, 3), _leaf(filled, 8)
    _exec(filled, _set_leaf(3, b), _set_leaf(8, a))
    assert_caught(filled, trust, 3, "AUDIT_LEAF_MISMATCH")
    _rewrite_nodes(filled)  # nodes now agree with the swapped entries...
    assert_caught(filled, trust, 3, "AUDIT_MISPLACED_EVENT")  # ...the signed positions do not


def test_tampered_interior_node(filled: AuditLog, trust: TrustStore) -> None:
    _exec(
        filled,
        update(NODES)
        .where(and_(NODES.c.log_id == LOG_ID, NODES.c.level == 2, NODES.c.idx == 1))
        .values(hash=b"\x00" * 32),
    )
    assert_caught(filled, trust, 4, "AUDIT_NODE_MISMATCH")  # node (2, 1) covers entries 4..7


def _truncate(log: AuditLog, k: int, *, checkpoints: bool) -> None:
    statements: list[object] = [
        delete(ENTRIES).where(and_(ENTRIES.c.log_id == LOG_ID, ENTRIES.c.idx >= k)),
        update(HEADS).where(HEADS.c.log_id == LOG_ID).values(size=k),
    ]
    store = merkle.MemoryNodes()
    store.append([b"\x00" * 32] * k)
    keep = set(store.nodes)
    with log.store.engine.connect() as conn:
        rows = conn.execute(
            select(NODES.c.level, NODES.c.idx).where(NODES.c.log_id == LOG_ID)
        ).all()
    for lv, ix in rows:
        if (lv, ix) not in keep:
            statements.append(
                delete(NODES).where(
                    and_(NODES.c.log_id == LOG_ID, NODES.c.level == lv, NODES.c.idx == ix)
                )
            )
    if checkpoints:
        statements.append(
            delete(CHECKPOINTS).where(and_(CHECKPOINTS.c.log_id == LOG_ID, CHECKPOINTS.c.size > k))
        )
    _exec(log, *statements)


def test_truncated_tail_entries_only(filled: AuditLog, trust: TrustStore) -> None:
    _exec(filled, delete(ENTRIES).where(and_(ENTRIES.c.log_id == LOG_ID, ENTRIES.c.idx >= 9)))
    assert_caught(filled, trust, 9, "AUDIT_TRUNCATED")


def test_truncated_tail_with_head_and_nodes(filled: AuditLog, trust: TrustStore) -> None:
    _truncate(filled, 9, checkpoints=False)
    assert_caught(filled, trust, 9, "AUDIT_TRUNCATED")  # its own newest checkpoint covers 12


def test_truncated_tail_everything_but_the_client_remembers(
    filled: AuditLog, trust: TrustStore
) -> None:
    client = CheckpointVerifier(trust, LOG_ID, log_org="hospital-a")
    client.update(filled)
    _truncate(filled, 9, checkpoints=True)
    assert verify_log(filled, trust).ok  # self-consistent: only an outside checkpoint can tell
    assert_caught(filled, trust, 9, "AUDIT_TRUNCATED", trusted=client.history)
    with pytest.raises(AuditRollbackError):
        client.update(filled)


def test_fork_served_to_holder_of_older_checkpoints(
    filled: AuditLog, trust: TrustStore, actor: EventSigner
) -> None:
    client = CheckpointVerifier(trust, LOG_ID, log_org="hospital-a")
    for cp in filled.checkpoints():  # the client watched the log grow, checkpoint by checkpoint
        client.accept(
            cp, filled.consistency_proof(client.size, cp.size) if 0 < client.size < cp.size else []
        )
    assert client.size == N
    # The operator (holding the log key) rewrites history from entry 7 and grows it past N.
    _truncate(filled, 7, checkpoints=True)
    sink = SignedLogSink(filled, actor)
    for i in range(7, N + 3):
        sink.record("training.round", subject={"job": "job-1"}, details={"round": i, "rows": 1})
    assert verify_log(filled, trust).ok  # the forked log is self-consistent and validly signed
    with pytest.raises(AuditForkError):
        client.update(filled)  # no consistency proof can link it to what the client saw
    assert_caught(filled, trust, 7, "AUDIT_FORK", trusted=client.history)
    # a holder of just one old checkpoint still detects it (the divergence lies before size N)
    assert_caught(filled, trust, 0, "AUDIT_FORK", trusted=client.history[-1])


def test_same_size_fork(
    filled: AuditLog, trust: TrustStore, log_key: EventSigner, actor: EventSigner
) -> None:
    client = CheckpointVerifier(trust, LOG_ID)
    client.update(filled)
    _truncate(filled, N - 1, checkpoints=True)
    SignedLogSink(filled, actor).record("access.denied", subject={}, details={"reason": "x"})
    with pytest.raises(AuditForkError):
        client.update(filled)


def test_row_beyond_the_head(filled: AuditLog, trust: TrustStore) -> None:
    with filled.store.engine.begin() as conn:
        conn.execute(
            ENTRIES.insert(),
            [
                {
                    "log_id": LOG_ID,
                    "idx": N,
                    "leaf": _leaf(filled, 0),
                    "type": "x",
                    "org": "y",
                    "time": "z",
                }
            ],
        )
    assert_caught(filled, trust, N, "AUDIT_UNEXPECTED_ENTRY")


def test_verify_while_appending_is_not_a_false_alarm(
    filled: AuditLog, trust: TrustStore, actor: EventSigner
) -> None:
    import threading

    sink = SignedLogSink(filled, actor)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            sink.record("training.round", subject={"job": "job-2"}, details={"round": i})
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(3):
            report = verify_log(filled, trust)
            assert report.ok, report
    finally:
        stop.set()
        t.join()


def test_checkpoint_forged_by_another_trusted_key(
    filled: AuditLog, trust: TrustStore, actor: EventSigner
) -> None:
    from audit_chain.checkpoint import sign_checkpoint

    forged = sign_checkpoint(actor, LOG_ID, N, filled.root())  # an event signer, not the log
    _exec(
        filled,
        update(CHECKPOINTS)
        .where(and_(CHECKPOINTS.c.log_id == LOG_ID, CHECKPOINTS.c.size == N))
        .values(token=forged.token),
    )
    for kw in ({}, {"log_org": "hospital-a"}):
        report = verify_log(filled, trust, **kw)  # type: ignore[arg-type]
        assert not report.ok and report.reason == "AUDIT_BAD_CHECKPOINT", report
