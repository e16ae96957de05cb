"""Property: any single changed byte of any entry is detected at that entry's index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import and_, update

from audit_chain import EventSigner, TrustStore
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.storage import ENTRIES
from audit_chain.verify import verify_log

N = 16
SIGNATURE_CLASS = {
    "AUDIT_BAD_SIGNATURE",
    "AUDIT_UNKNOWN_KEY",
    "AUDIT_ALG_MISMATCH",
    "AUDIT_SCHEMA",
    "AUDIT_ACTOR_MISMATCH",
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes], TrustStore]:
    log_key, actor = EventSigner.generate("log-org"), EventSigner.generate("hdab-nl", alg="ES256")
    path = tmp_path_factory.mktemp("prop") / "pristine.db"
    with AuditLog.open(path, log_id="p", signer=log_key) as log:
        sink = SignedLogSink(log, actor)
        for i in range(N):
            sink.record(
                "data.extracted",
                subject={"job": f"job-{i}"},
                details={"rows": i, "patients": 2 * i},
            )
        leaves = [e.leaf for e in log.entries()]
    return path, leaves, TrustStore([log_key.trusted_key(), actor.trusted_key()])


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(index=st.integers(0, N - 1), data=st.data())
def test_any_changed_byte_is_found_at_its_index(
    pristine: tuple[Path, list[bytes], TrustStore], tmp_path: Path, index: int, data: st.DataObject
) -> None:
    path, leaves, trust = pristine
    copy = tmp_path / f"copy-{index}-{data.draw(st.integers(0, 10**9))}.db"
    with sqlite3.connect(path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    leaf = bytearray(leaves[index])
    pos = data.draw(st.integers(0, len(leaf) - 1))
    new = data.draw(st.integers(33, 126).filter(lambda b: b != leaf[pos]))
    leaf[pos] = new
    with AuditLog.open(copy, log_id="p") as log:
        with log.store.engine.begin() as conn:
            conn.execute(
                update(ENTRIES)
                .where(and_(ENTRIES.c.log_id == "p", ENTRIES.c.idx == index))
                .values(leaf=bytes(leaf))
            )
        report = verify_log(log, trust)
    assert not report.ok
    assert report.index == index
    assert report.reason in SIGNATURE_CLASS | {"AUDIT_LEAF_MISMATCH"}, report
