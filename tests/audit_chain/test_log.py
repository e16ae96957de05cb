"""AuditLog on SQLite and PostgreSQL: appends, proofs, checkpoints, the checkpoint client,
the sink protocol and the FHIR export."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from audit_chain import EventSigner, TrustStore, merkle
from audit_chain.checkpoint import CheckpointVerifier, verify_checkpoint
from audit_chain.errors import (
    AuditCheckpointError,
    AuditError,
    AuditForkError,
    AuditRangeError,
    AuditRollbackError,
    AuditSchemaError,
    AuditSignatureError,
)
from audit_chain.events import sign_event
from audit_chain.fhir_export import EXT_JWS, export_audit_events
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.verify import verify_log
from tests.audit_chain.conftest import HASH, LOG_ID


class AuditSink(Protocol):  # the DEVELOPERS.md contract, declared here as producers do
    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None: ...


def _fill(sink: SignedLogSink, n: int) -> None:
    for i in range(n):
        sink.record("training.round", subject={"job": "job-1"}, details={"round": i, "rows": 10})


def test_append_prove_checkpoint(log: AuditLog, sink: SignedLogSink, trust: TrustStore) -> None:
    as_protocol: AuditSink = sink
    as_protocol.record(
        "permit.issued", subject={"permit": "p-1"}, details={"permit_hash": HASH, "version": 1}
    )
    _fill(sink, 20)
    assert log.size() == 21
    cp = verify_checkpoint(log.checkpoint().token, trust, origin=LOG_ID)
    assert cp.size == 21 and cp.root == log.root()
    assert len(log.checkpoints()) == 21  # one per append transaction
    for i in range(21):
        entry = log.entry(i)
        proof = log.inclusion_proof(i, cp.size)
        assert len(proof) <= 5  # ceil(log2 21)
        merkle.verify_inclusion(entry.leaf_hash, i, cp.size, proof, cp.root)
    old = log.checkpoints()[6]
    merkle.verify_consistency(
        old.size, cp.size, log.consistency_proof(old.size, cp.size), old.root, cp.root
    )
    with pytest.raises(AuditRangeError):
        log.inclusion_proof(21, 21)
    with pytest.raises(AuditRangeError):
        log.consistency_proof(3, 22)


def test_batch_is_one_transaction_and_one_checkpoint(log: AuditLog, sink: SignedLogSink) -> None:
    with sink.batch():
        _fill(sink, 50)
        assert log.size() == 0  # nothing written until the batch ends
    assert log.size() == 50
    assert [c.size for c in log.checkpoints()] == [50]


def test_bad_event_refused_and_nothing_lost(
    log: AuditLog, sink: SignedLogSink, actor: EventSigner
) -> None:
    _fill(sink, 3)
    good = sign_event(
        actor, "access.allowed", subject={"job": "j"}, details={}, origin=LOG_ID, index=3
    )
    with pytest.raises(AuditSchemaError):
        sink.record("access.denied", subject={"patient": "12345"}, details={})
    for bad in ("not-a-jws", good[:-3] + "AAA" + "=", "a.b.c"):
        with pytest.raises(AuditError):
            log.append_many([good, bad])  # one bad event refuses the whole batch
    assert log.size() == 3
    log.append(good)
    assert log.size() == 4


def test_append_verifies_signatures_when_given_trust(
    db_url: str, log_key: EventSigner, trust: TrustStore
) -> None:
    with AuditLog.open(db_url, log_id="strict", signer=log_key, trust=trust) as strict:
        stranger = EventSigner.generate("hdab-nl")
        with pytest.raises(AuditError) as err:
            strict.append(
                sign_event(
                    stranger, "access.allowed", subject={}, details={}, origin="strict", index=0
                )
            )
        assert err.value.code == "AUDIT_UNKNOWN_KEY"
        assert strict.size() == 0


def test_several_logs_in_one_database(
    db_url: str, log_key: EventSigner, actor: EventSigner, trust: TrustStore
) -> None:
    with (
        AuditLog.open(db_url, log_id="a", signer=log_key) as a,
        AuditLog.open(db_url, log_id="b", signer=log_key) as b,
    ):
        _fill(SignedLogSink(a, actor), 3)
        _fill(SignedLogSink(b, actor), 5)
        assert (a.size(), b.size()) == (3, 5)
        assert verify_log(a, trust).ok and verify_log(b, trust).ok


def test_checkpoint_client_accepts_only_consistent_successors(
    log: AuditLog, sink: SignedLogSink, trust: TrustStore, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "client.json"
    client = CheckpointVerifier(trust, LOG_ID, log_org="hospital-a", path=state)
    _fill(sink, 5)
    first = client.update(log)
    _fill(sink, 9)
    second = client.update(log)
    assert (first.size, second.size) == (5, 14)
    entry = log.entry(3)
    client.verify_inclusion(entry.token, 3, log.inclusion_proof(3, client.size))
    # the state survives a restart
    again = CheckpointVerifier(trust, LOG_ID, log_org="hospital-a", path=state)
    assert again.latest is not None and again.latest.size == 14
    # an older checkpoint is a rollback
    with pytest.raises(AuditRollbackError):
        again.accept(log.checkpoints()[2])
    # a newer checkpoint without a valid consistency proof is a fork
    _fill(sink, 2)
    newest = log.checkpoint()
    with pytest.raises(AuditForkError):
        again.accept(newest, [b"\x00" * 32])
    # another log's checkpoint, or one signed by a non-log key, is refused
    with pytest.raises(AuditCheckpointError):
        CheckpointVerifier(trust, "other-log").accept(newest)
    with pytest.raises(AuditCheckpointError):
        CheckpointVerifier(trust, LOG_ID, log_org="hdab-nl").accept(newest)
    forged = newest.token[:-4] + ("AAAA" if not newest.token.endswith("AAAA") else "BBBB")
    with pytest.raises((AuditSignatureError, AuditCheckpointError)):
        again.accept(forged)


class CountingReader:
    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.reads = 0
        self.calls = 0

    def get_nodes(self, ids: Collection[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
        self.calls += 1
        self.reads += len(ids)
        return self.log.get_nodes(ids)


def test_proofs_read_logarithmically_many_stored_nodes(log: AuditLog, sink: SignedLogSink) -> None:
    with sink.batch():
        _fill(sink, 1000)
    reader = CountingReader(log)
    for index in (0, 499, 998, 999):
        reader.reads = reader.calls = 0
        proof = merkle.inclusion_proof(index, 1000, reader)
        assert reader.calls == 1 and reader.reads <= 2 * 10
        assert len(proof) <= 10
    reader.reads = reader.calls = 0
    merkle.consistency_proof(333, 1000, reader)
    assert reader.calls == 1 and reader.reads <= 2 * 10


def test_fhir_export(log: AuditLog, sink: SignedLogSink, trust: TrustStore) -> None:
    sink.record(
        "access.denied",
        subject={"permit": "p-1", "job": "job-1"},
        details={"reason": "expired", "rounds_used": 3},
    )
    sink.record(
        "model.released",
        subject={"model": "m-1"},
        details={"model_hash": HASH, "rounds": 5, "checkpoint_root": HASH},
    )
    resources = list(export_audit_events(log, trust=trust))
    assert len(resources) == 2
    denied, released = (AuditEvent.model_validate(r) for r in resources)
    assert (
        denied.type.code == "access.denied"
        and denied.outcome == "4"
        and denied.outcomeDesc == "expired"
    )
    assert denied.agent[0].who.identifier.value == "hdab-nl"
    assert {e.what.identifier.value for e in denied.entity} >= {"p-1", "job-1"}
    assert released.action == "C" and HASH in {e.what.identifier.value for e in released.entity}
    jws_ext = [x for x in resources[0]["extension"] if x["url"] == EXT_JWS]
    assert jws_ext[0]["valueString"] == log.entry(0).token
