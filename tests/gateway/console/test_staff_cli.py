"""``ehds hdab staff add|disable|reset|list`` against the HDAB database and audit log."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gateway.cli import main

PASSWORD = "a long enough staff password"


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["hdab", "staff", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_staff_accounts_lifecycle_is_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit_chain.log import AuditLog
    from gateway.console.passwords import verify_password
    from gateway.console.store import ConsoleStore
    from permits.hdab import make_engine

    monkeypatch.setenv("EHDS_HDAB_ID", "hdab-cli")
    data = ["--data-dir", str(tmp_path)]
    code, out, _ = run(
        capsys,
        monkeypatch,
        "add",
        "case.officer-1",
        "--role",
        "reviewer",
        "--password-stdin",
        *data,
        stdin=PASSWORD + "\n",
    )
    assert code == 0 and "add done" in out
    code, _, err = run(
        capsys,
        monkeypatch,
        "add",
        "case.officer-1",
        "--role",
        "signer",
        "--password-stdin",
        *data,
        stdin=PASSWORD + "\n",
    )
    assert code == 2 and "[STAFF_EXISTS]" in err
    code, _, err = run(
        capsys,
        monkeypatch,
        "add",
        "weak",
        "--role",
        "signer",
        "--password-stdin",
        *data,
        stdin="short\n",
    )
    assert code == 2 and "[STAFF_WEAK_PASSWORD]" in err and "Traceback" not in err
    code, _, err = run(
        capsys,
        monkeypatch,
        "add",
        "Not Valid",
        "--role",
        "signer",
        "--password-stdin",
        *data,
        stdin=PASSWORD + "\n",
    )
    assert code == 2 and "[STAFF_ID_INVALID]" in err
    assert run(capsys, monkeypatch, "disable", "case.officer-1", *data)[0] == 0
    code, out, _ = run(capsys, monkeypatch, "list", *data)
    assert "case.officer-1\treviewer\tdisabled" in out
    code, _, _ = run(
        capsys,
        monkeypatch,
        "reset",
        "case.officer-1",
        "--role",
        "signer",
        "--password-stdin",
        *data,
        stdin="another long password\n",
    )
    assert code == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'hdab.sqlite'}")
    store = ConsoleStore(engine)
    staff = store.staff("case.officer-1")
    assert staff is not None and staff.role == "signer" and not staff.disabled
    stored = store.password_hash("case.officer-1")
    assert stored is not None and stored.startswith("$argon2id$")
    assert verify_password(stored, "another long password") and not verify_password(
        stored, PASSWORD
    )
    engine.dispose()
    log = AuditLog.open(f"sqlite:///{tmp_path / 'hdab-audit.sqlite'}", log_id="hdab-cli:audit")
    changed = [e for e in log.entries() if e.type == "staff.changed"]
    log.close()
    assert len(changed) == 3  # add, disable, reset; the refused ones wrote nothing
    assert PASSWORD not in str([e.token for e in changed])
