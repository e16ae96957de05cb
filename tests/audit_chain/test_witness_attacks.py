"""The attacks of issue #11, by someone with write access to the log's database, are caught.

Each one verified OK before logs carried their position and other organisations
witnessed them. Here three witnesses (each on its own database) cosign the log;
the verifier trusts them with a quorum and reads what they hold from their own
databases, which the attacker does not control. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import and_, delete, update

from audit_chain import EventSigner, TrustStore, merkle
from audit_chain.errors import AuditHeadError, AuditWitnessError
from audit_chain.events import parse_event
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.storage import CHECKPOINTS, COSIGNATURES, ENTRIES, HEADS, NODES
from audit_chain.verify import verify_log
from tests.audit_chain.conftest import LOG_ID
from tests.audit_chain.witnesses import Party, cosign, policy, witnesses

N = 10
DENIED = 5  # the index of the access.denied event


def _record(sink: SignedLogSink, i: int) -> None:
    if i == DENIED:
        sink.record("access.denied", subject={"job": "job-1"}, details={"reason": "expired"})
    else:
        sink.record("training.round", subject={"job": "job-1"}, details={"round": i})


@pytest.fixture
def witnessed(
    log: AuditLog, log_key: EventSigner, witness_urls: list[str]
) -> Iterator[tuple[AuditLog, list[Party]]]:
    """A log whose owner also signs its own events, cosigned at sizes 6 and N by 3 witnesses."""
    sink = SignedLogSink(log, log_key)
    with witnesses(witness_urls, log_key, LOG_ID) as parties:
        for i in range(N):
            _record(sink, i)
            if i + 1 in (6, N):
                for p in parties:
                    cosign(log, p)
        yield log, parties


def _exec(log: AuditLog, *statements: object) -> None:
    with log.store.engine.begin() as conn:
        for st in statements:
            conn.execute(st)  # type: ignore[call-overload]


def _rewrite_nodes(log: AuditLog, size: int) -> None:
    """The careful attacker: a node table that agrees with the (tampered) entries."""
    nodes = merkle.MemoryNodes()
    nodes.append(merkle.leaf_hash(e.leaf) for e in log.entries(0, size))
    _exec(log, delete(NODES).where(NODES.c.log_id == LOG_ID))
    with log.store.engine.begin() as conn:
        conn.execute(
            NODES.insert(),
            [
                {"log_id": LOG_ID, "level": lv, "idx": ix, "hash": h}
                for (lv, ix), h in nodes.nodes.items()
            ],
        )


def _verify(log: AuditLog, trust: TrustStore, parties: list[Party], quorum: int = 2):  # type: ignore[no-untyped-def]
    return verify_log(log, trust, log_org="hospital-a", witnesses=policy(parties, LOG_ID, quorum))


def test_honest_log_verifies_under_the_quorum(
    witnessed: tuple[AuditLog, list[Party]], trust: TrustStore, log_key: EventSigner
) -> None:
    log, parties = witnessed
    report = _verify(log, trust, parties, quorum=3)
    assert report.ok, report.message
    assert report.verified_size == N and set(report.cosigned.values()) == {N}
    # newer entries are signed but not presented as verified until witnessed
    SignedLogSink(log, log_key).record("training.round", subject={"job": "j"}, details={"round": 1})
    report = _verify(log, trust, parties)
    assert report.ok and report.size == N + 1 and report.verified_size == N
    assert "NOT yet witnessed" in report.message


def test_attack1_truncation_with_checkpoints_and_nodes_removed(
    witnessed: tuple[AuditLog, list[Party]], trust: TrustStore
) -> None:
    log, parties = witnessed
    keep = 7
    _exec(
        log,
        delete(ENTRIES).where(and_(ENTRIES.c.log_id == LOG_ID, ENTRIES.c.idx >= keep)),
        delete(CHECKPOINTS).where(and_(CHECKPOINTS.c.log_id == LOG_ID, CHECKPOINTS.c.size > keep)),
        delete(COSIGNATURES).where(COSIGNATURES.c.log_id == LOG_ID),
        update(HEADS).where(HEADS.c.log_id == LOG_ID).values(size=keep),
    )
    _rewrite_nodes(log, keep)
    assert verify_log(log, trust, log_org="hospital-a").ok  # alone, the log looks fine
    report = _verify(log, trust, parties)
    assert (report.ok, report.reason, report.index) == (False, "AUDIT_TRUNCATED", keep)
    assert f"cosigned size {N}" in report.message


def test_attack2_copied_event_appended_after_the_checkpoint(
    witnessed: tuple[AuditLog, list[Party]], trust: TrustStore, log_key: EventSigner
) -> None:
    log, _ = witnessed
    copy = log.entry(3)
    _exec(
        log,
        ENTRIES.insert().values(
            log_id=LOG_ID, idx=N, leaf=copy.leaf, type=copy.type, org=copy.org, time=copy.time
        ),
        update(HEADS).where(HEADS.c.log_id == LOG_ID).values(size=N + 1),
    )
    _rewrite_nodes(log, N + 1)
    report = verify_log(log, trust, log_org="hospital-a")
    assert (report.reason, report.index) == ("AUDIT_MISPLACED_EVENT", N)
    # the owner's next append would checkpoint it for good: it refuses instead
    with pytest.raises(AuditHeadError) as err:
        SignedLogSink(log, log_key).record("access.allowed", subject={"job": "j"}, details={})
    assert err.value.code == "AUDIT_HEAD_MISMATCH" and f"size {N + 1}" in str(err.value)
    with pytest.raises(AuditHeadError):
        log.checkpoint()  # nor does it sign a checkpoint over it
    assert log.store.latest_checkpoint(LOG_ID)[0] == N  # type: ignore[index]


def test_attack3_side_column_changed(
    witnessed: tuple[AuditLog, list[Party]], trust: TrustStore
) -> None:
    log, parties = witnessed
    _exec(
        log,
        update(ENTRIES)
        .where(and_(ENTRIES.c.log_id == LOG_ID, ENTRIES.c.idx == DENIED))
        .values(type="access.allowed"),
    )
    report = _verify(log, trust, parties)
    assert (report.ok, report.reason, report.index) == (False, "AUDIT_SIDE_COLUMN", DENIED)
    assert log.entry(DENIED).type == "access.denied"  # listings read the signed leaf


def test_attack4_rewrite_without_an_entry_re_signed_by_the_owner(
    witnessed: tuple[AuditLog, list[Party]], trust: TrustStore, log_key: EventSigner
) -> None:
    log, parties = witnessed
    events = [parse_event(e.leaf) for e in log.entries()]
    del events[DENIED]  # the refusal disappears
    tables = (ENTRIES, NODES, CHECKPOINTS, COSIGNATURES, HEADS)
    _exec(log, *(delete(t).where(t.c.log_id == LOG_ID) for t in tables))
    sink = SignedLogSink(log, log_key)  # the owner's keys re-sign and re-checkpoint everything
    for e in events:
        sink.record(e.type, subject=e.subject, details=e.details)
    assert verify_log(log, trust, log_org="hospital-a").ok  # self-consistent
    report = _verify(log, trust, parties)
    assert (report.reason, report.index) == ("AUDIT_TRUNCATED", N - 1)
    assert f"cosigned size {N}" in report.message
    # padded back to N entries: now the witnesses' root at size N does not match
    sink.record("training.round", subject={"job": "job-1"}, details={"round": 99})
    report = _verify(log, trust, parties)
    assert report.reason == "AUDIT_FORK" and f"size {N} with another root" in report.message
    # and no witness cosigns the rewritten history
    with pytest.raises(AuditWitnessError) as err:
        cosign(log, parties[0])
    assert err.value.status == 409 and err.value.code == "WITNESS_FORK"


def test_fork_shown_to_two_witnesses(
    log: AuditLog, log_key: EventSigner, trust: TrustStore, witness_urls: list[str]
) -> None:
    with witnesses(witness_urls, log_key, LOG_ID) as parties:
        sink = SignedLogSink(log, log_key)
        for i in range(N):
            _record(sink, i)
        cosign(log, parties[0])
        cosign(log, parties[1])
        # the same log key shows a second history to the third witness (kept in its database)
        with AuditLog.open(witness_urls[2], log_id=LOG_ID, signer=log_key) as other:
            osink = SignedLogSink(other, log_key)
            for i in range(N):
                osink.record("training.round", subject={"job": "job-2"}, details={"round": i})
            cosign(other, parties[2])
            report = _verify(other, trust, parties, quorum=1)
            assert report.reason == "AUDIT_FORK" and f"size {N}" in report.message
        report = _verify(log, trust, parties, quorum=2)
        assert (report.ok, report.reason) == (False, "AUDIT_FORK")
        assert parties[2].witness.name in report.message and f"size {N}" in report.message
