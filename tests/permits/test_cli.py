"""``ehds keys`` and ``ehds permit`` end to end on a SQLite HDAB database with a signed audit log."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli import main
from tests.permits.helpers import application
from trust import generate_jwk as generate_key
from trust import load_jwk, thumbprint


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    try:
        return code, json.loads(out)
    except json.JSONDecodeError:
        return code, out


def test_keys_generate_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k.jwk"
    code, out = run(capsys, "keys", "generate", "--alg", "ES256", "--out", str(key), "--json")
    assert code == 0 and out["alg"] == "ES256" and "private_jwk" not in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert out["kid"] == thumbprint(load_jwk(key))
    code, shown = run(capsys, "keys", "show", str(key), "--json")
    assert shown["kid"] == out["kid"] and shown["private"] is True
    assert main(["keys", "generate", "--out", str(key)]) == 2  # refuses to overwrite
    assert "[PERMIT_KEY_ERROR]" in capsys.readouterr().err


def test_permit_cli_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "hdab.jwk"
    run(capsys, "keys", "generate", "--out", str(key))
    code, entry = run(
        capsys, "keys", "show", str(key), "--trust-entry", "--hdab", "hdab-fi", "--country", "FI"
    )
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({"keys": [entry]}))
    app = tmp_path / "application.json"
    app.write_text(json.dumps(application(generate_key(), generate_key())))
    db = str(tmp_path / "hdab.sqlite")
    common = ["--db", db, "--hdab-id", "hdab-fi", "--country", "FI", "--key", str(key), "--json"]

    code, applied = run(capsys, "permit", "apply", str(app), *common)
    assert code == 0 and applied["status"] == "pending"
    token_file = tmp_path / "permit.jws"
    code, issued = run(
        capsys, "permit", "issue", applied["application"], "--out", str(token_file), *common
    )
    assert code == 0 and issued["version"] == 1

    code, shown = run(capsys, "permit", "show", str(token_file), "--json")
    assert shown["verified"] is False and shown["payload"]["jti"] == issued["jti"]
    code, ok = run(
        capsys,
        "permit",
        "verify",
        str(token_file),
        "--trust",
        str(trust),
        "--holder",
        "site-a",
        "--no-status",
        "--json",
    )
    assert code == 0 and ok["valid"] and ok["signers"] == ["hdab-fi"]
    assert ok["status_checked"] is False  # and it says so
    # without a status list and without --no-status it refuses to call the permit valid
    code = main(["permit", "verify", str(token_file), "--trust", str(trust), "--json"])
    captured = capsys.readouterr()
    assert code != 0 and "VALID" not in captured.out
    assert orjson.loads(captured.err)["error"]["code"] == "PERMIT_STATUS_REQUIRED"  # --json
    code, bad = run(
        capsys,
        "permit",
        "verify",
        str(token_file),
        "--trust",
        str(trust),
        "--holder",
        "site-z",
        "--no-status",
        "--json",
    )
    assert code == 1 and bad["reason"] == "holder_not_named"

    code, revoked = run(
        capsys, "permit", "revoke", issued["jti"], "--reason", "breach_of_conditions", *common
    )
    assert code == 0 and revoked["status_list_version"] == 2
    code, sl = run(capsys, "permit", "show", "--db", db, "--status-list", "--json")
    status_file = tmp_path / "status.jws"
    status_file.write_text(sl["token"])
    code, res = run(
        capsys,
        "permit",
        "verify",
        str(token_file),
        "--trust",
        str(trust),
        "--status-list",
        str(status_file),
        "--json",
    )
    assert code == 1 and res["reason"] == "permit_revoked" and res["code"] == "PERMIT_REVOKED"
    code, register = run(capsys, "permit", "show", "--db", db, "--register")
    assert register["permits"][0]["status"] == "revoked"

    # every step is a signed event in the audit log of the same database
    from audit_chain.events import parse_event
    from audit_chain.log import AuditLog

    with AuditLog.open(f"sqlite:///{db}.audit.sqlite", log_id="hdab") as log:
        types = [parse_event(e.token).type for e in log.entries()]
    assert types == [
        "permit.applied",
        "permit.approved",
        "permit.issued",
        "statuslist.published",
        "permit.revoked",
        "statuslist.published",
    ]


def test_issue_refuses_prohibited_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "hdab.jwk"
    run(capsys, "keys", "generate", "--out", str(key))
    app = tmp_path / "application.json"
    app.write_text(json.dumps(application(generate_key(), generate_key(), uses=("advertising",))))
    common = [
        "--db",
        str(tmp_path / "h.sqlite"),
        "--hdab-id",
        "hdab-fi",
        "--country",
        "FI",
        "--key",
        str(key),
        "--json",
    ]
    _, applied = run(capsys, "permit", "apply", str(app), *common)
    code, out = run(capsys, "permit", "issue", applied["application"], *common)
    assert code == 1 and out == {
        "application": applied["application"],
        "status": "refused",
        "reason": "prohibited_use",
    }
