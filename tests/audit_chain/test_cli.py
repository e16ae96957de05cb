"""``ehds audit verify|proof|checkpoint|show|export-fhir`` end to end on a real SQLite log."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import and_, update

from audit_chain import EventSigner, TrustStore, merkle
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.storage import ENTRIES
from gateway.cli import main
from tests.audit_chain.conftest import HASH, LOG_ID


@pytest.fixture
def setup(
    tmp_path: Path, log_key: EventSigner, actor: EventSigner, trust: TrustStore
) -> tuple[str, str]:
    db = str(tmp_path / "audit.db")
    with AuditLog.open(db, log_id=LOG_ID, signer=log_key) as log:
        sink = SignedLogSink(log, actor)
        sink.record(
            "permit.issued", subject={"permit": "p-1"}, details={"permit_hash": HASH, "version": 1}
        )
        for i in range(6):
            sink.record("training.round", subject={"job": "job-1"}, details={"round": i})
    trust_file = tmp_path / "trust.json"
    trust.save(trust_file)
    return db, str(trust_file)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_verify_ok_and_tampered(setup: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    db, trust = setup
    code, out, _ = _run(
        capsys, "audit", "verify", "--db", db, "--trust", trust, "--log-org", "hospital-a", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["size"] == 7 and report["checkpoint_size"] == 7
    code, out, _ = _run(
        capsys, "audit", "verify", "--db", db, "--trust", trust, "--log-org", "hospital-a"
    )
    assert code == 0 and out.startswith("OK")
    with AuditLog.open(db, log_id=LOG_ID) as log, log.store.engine.begin() as conn:
        conn.execute(
            update(ENTRIES)
            .where(and_(ENTRIES.c.log_id == LOG_ID, ENTRIES.c.idx == 2))
            .values(leaf=log.entry(3).leaf)
        )
    code, out, _ = _run(
        capsys, "audit", "verify", "--db", db, "--trust", trust, "--log-org", "hospital-a", "--json"
    )
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert (report["index"], report["reason"]) == (2, "AUDIT_LEAF_MISMATCH")


def test_verify_with_checkpoint_state_catches_rollback(
    setup: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, trust = setup
    state = str(tmp_path / "seen.json")
    assert (
        _run(
            capsys,
            "audit",
            "verify",
            "--db",
            db,
            "--trust",
            trust,
            "--log-org",
            "hospital-a",
            "--checkpoint-state",
            state,
        )[0]
        == 0
    )
    # the operator restores an older backup: 3 entries, self-consistent
    older = str(tmp_path / "older.db")
    with AuditLog.open(db, log_id=LOG_ID) as log, AuditLog.open(older, log_id=LOG_ID) as old:
        for e in log.entries(0, 3):
            old.store.append(LOG_ID, [(e.leaf, e.type, e.org, e.time)])
        cp = log.checkpoints()[2]
        with old.store.engine.begin() as conn:
            old.store._insert_checkpoint(conn, LOG_ID, cp.size, cp.root, cp.token)
    code, out, _ = _run(
        capsys,
        "audit",
        "verify",
        "--db",
        older,
        "--trust",
        trust,
        "--log-org",
        "hospital-a",
        "--checkpoint-state",
        state,
        "--json",
    )
    report = json.loads(out)
    assert code == 1 and (report["index"], report["reason"]) == (3, "AUDIT_TRUNCATED")


def test_proofs_checkpoint_show_export(
    setup: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = setup
    code, out, _ = _run(capsys, "audit", "proof", "--db", db, "--index", "2", "--json")
    p = json.loads(out)
    assert code == 0 and p["tree_size"] == 7
    merkle.verify_inclusion(
        base64.b64decode(p["leaf_hash"]),
        2,
        7,
        [base64.b64decode(h) for h in p["proof"]],
        base64.b64decode(p["root"]),
    )
    code, out, _ = _run(capsys, "audit", "proof", "--db", db, "--from", "3", "--to", "7", "--json")
    c = json.loads(out)
    merkle.verify_consistency(
        3,
        7,
        [base64.b64decode(h) for h in c["proof"]],
        base64.b64decode(c["root1"]),
        base64.b64decode(c["root2"]),
    )
    code, out, _ = _run(capsys, "audit", "checkpoint", "--db", db, "--json")
    assert code == 0 and json.loads(out)["size"] == 7
    code, out, _ = _run(capsys, "audit", "show", "--db", db, "--limit", "3")
    assert code == 0 and "permit.issued" in out and out.count("training.round") == 2
    code, out, _ = _run(capsys, "audit", "show", "--db", db, "--index", "0", "--json")
    assert json.loads(out)["entries"][0]["jws"].count(".") == 2
    code, out, _ = _run(capsys, "audit", "export-fhir", "--db", db)
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(lines) == 7 and all(r["resourceType"] == "AuditEvent" for r in lines)


def test_errors_are_one_line_with_a_code(
    setup: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _trust = setup
    code, _, err = _run(capsys, "audit", "proof", "--db", db, "--index", "99")
    assert code == 2 and err.startswith("ehds: error: [AUDIT_OUT_OF_RANGE]")
    (tmp_path / "bad.json").write_text("{}")
    code, _, err = _run(
        capsys, "audit", "verify", "--db", db, "--trust", str(tmp_path / "bad.json")
    )
    assert code == 2 and "[AUDIT_UNKNOWN_KEY]" in err
    code, _, err = _run(capsys, "audit", "checkpoint", "--db", "mysql://x/y")
    assert code == 2 and "[AUDIT_CONFIG]" in err
