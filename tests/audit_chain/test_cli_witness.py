"""``ehds audit verify|show`` with a witness policy, on a real SQLite log and witness databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import and_, update

from audit_chain import EventSigner, TrustStore
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.storage import ENTRIES
from gateway.cli import main
from tests.audit_chain.conftest import LOG_ID
from tests.audit_chain.witnesses import cosign, witnesses


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def world(
    tmp_path: Path, log_key: EventSigner, trust: TrustStore
) -> tuple[str, str, list[str], list[str]]:
    db = str(tmp_path / "audit.db")
    wdbs = [str(tmp_path / f"w{i}.db") for i in range(2)]
    with (
        AuditLog.open(db, log_id=LOG_ID, signer=log_key) as log,
        witnesses(wdbs, log_key, LOG_ID) as ps,
    ):
        sink = SignedLogSink(log, log_key)
        sink.record("access.denied", subject={"job": "j"}, details={"reason": "expired"})
        for i in range(4):
            sink.record("training.round", subject={"job": "j"}, details={"round": i})
        for p in ps:
            cosign(log, p)
        vkeys = [p.witness.verifier().vkey() for p in ps]
    trust_file = tmp_path / "trust.json"
    trust.save(trust_file)
    return db, str(trust_file), wdbs, vkeys


def test_verify_with_quorum_and_witness_databases(
    world: tuple[str, str, list[str], list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, trust, wdbs, vkeys = world
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {"log_org": "hospital-a", "quorum": 2, "witnesses": vkeys, "witness_sources": wdbs}
        )
    )
    code, out, _ = _run(
        capsys, "audit", "verify", "--db", db, "--trust", trust, "--policy", str(policy), "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["verified_size"] == 5 and len(report["cosigned"]) == 2
    # the log forgets its cosignatures and loses its tail: the witnesses' databases still tell
    with AuditLog.open(db) as log, log.store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_cosignature")
        conn.exec_driver_sql("DELETE FROM audit_entry WHERE idx >= 3")
        conn.exec_driver_sql("DELETE FROM audit_checkpoint WHERE size > 3")
        conn.exec_driver_sql("DELETE FROM audit_node WHERE 1 = 1")
        conn.exec_driver_sql("UPDATE audit_log SET size = 3")
    argv = ["audit", "verify", "--db", db, "--trust", trust, "--log-org", "hospital-a"]
    wit = [
        a for v, w in zip(vkeys, wdbs, strict=True) for a in ("--witness", v, "--witness-source", w)
    ]
    code, out, _ = _run(capsys, *argv, *wit, "--quorum", "2")
    assert code == 1 and "[AUDIT_TRUNCATED] at index 3" in out and "cosigned size 5" in out


def test_log_org_required_and_missing_database_is_an_error(
    world: tuple[str, str, list[str], list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, trust, _, _ = world
    code, _, err = _run(capsys, "audit", "verify", "--db", db, "--trust", trust)
    assert code != 0 and "--log-org is required" in err
    missing = str(tmp_path / "nope.db")
    code, out, err = _run(
        capsys, "audit", "verify", "--db", missing, "--trust", trust, "--log-org", "x"
    )
    assert code != 0 and "no audit database" in err and "OK" not in out
    assert not Path(missing).exists()
    code, _, err = _run(capsys, "audit", "show", "--db", db, "--log-id", "other")
    assert code != 0 and "no log 'other'" in err


def test_show_reads_the_signed_leaf(
    world: tuple[str, str, list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _, _, _ = world
    with AuditLog.open(db) as log, log.store.engine.begin() as conn:
        conn.execute(
            update(ENTRIES)
            .where(and_(ENTRIES.c.log_id == LOG_ID, ENTRIES.c.idx == 0))
            .values(type="access.allowed")
        )
    code, out, _ = _run(capsys, "audit", "show", "--db", db, "--json")
    assert code == 0 and json.loads(out)["entries"][0]["type"] == "access.denied"
