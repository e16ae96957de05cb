"""``ehds hdab application|permit`` and ``ehds node ...`` against real services on loopback.

The services are started with the documented command (``ehds hdab serve``),
the keys with ``ehds keys generate`` and registered with ``ehds hdab client
add``: what an HDAB and a researcher do by hand, minus the typing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jwcrypto import jwk

from gateway.cli import main
from tests.gateway.conftest import application_body
from tests.gateway.test_serve import free_port

ROOT = Path(__file__).resolve().parents[2]


def ehds(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """Run ``ehds argv`` in-process; parse stdout as JSON when it is JSON."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        value = orjson.loads(out) if out.strip() else None
    except orjson.JSONDecodeError:
        value = out
    return code, value, err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HDAB service as a process, started the documented way; its data dir."""
    data = tmp_path / "hdab"
    keys = tmp_path / "keys"
    for name in ("staff", "user", "person"):
        assert (
            main(
                [
                    "keys",
                    "generate",
                    "--out",
                    str(keys / f"{name}.jwk"),
                    "--public-out",
                    str(keys / f"{name}.pub.jwk"),
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "hdab",
                "client",
                "add",
                "--data-dir",
                str(data),
                "--key",
                str(keys / "staff.pub.jwk"),
                "--org",
                "hdab-test",
                "--role",
                "hdab_staff",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "hdab",
                "client",
                "add",
                "--data-dir",
                str(data),
                "--key",
                str(keys / "user.pub.jwk"),
                "--org",
                "org-research-1",
                "--role",
                "data_user",
            ]
        )
        == 0
    )
    port = free_port()
    env = {
        **os.environ,
        "EHDS_HDAB_ID": "hdab-test",
        "EHDS_HDAB_COUNTRY": "FI",
        "EHDS_SERVER_SHUTDOWN_TIMEOUT": "2",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "hdab",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--json",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        yield url, keys
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_the_whole_permit_lifecycle_from_the_command_line(
    served: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, keys = served
    capsys.readouterr()
    user = jwk.JWK.from_json((keys / "user.jwk").read_text())
    person = jwk.JWK.from_json((keys / "person.jwk").read_text())
    application = tmp_path / "application.json"
    application.write_bytes(orjson.dumps(application_body(user, person)))
    as_user = ("--url", url, "--key", str(keys / "user.jwk"), "--json")
    as_staff = ("--url", url, "--key", str(keys / "staff.jwk"), "--json")

    code, rec, err = ehds(capsys, "hdab", "application", "apply", str(application), *as_user)
    assert code == 0 and rec["status"] == "pending", err
    app_id = rec["id"]
    # a data user cannot decide: the service's refusal is one JSON error, exit 2
    code, out, err = ehds(capsys, "hdab", "application", "approve", app_id, *as_user)
    assert code == 2 and out is None
    assert orjson.loads(err)["error"]["code"] == "AUTH_FORBIDDEN"
    code, rec, _ = ehds(capsys, "hdab", "application", "approve", app_id, *as_staff)
    assert code == 0 and rec["status"] == "approved"
    code, rec, _ = ehds(capsys, "hdab", "application", "show", app_id, *as_user)
    assert rec["status"] == "approved"

    token_file = tmp_path / "permit.jws"
    code, issued, _ = ehds(
        capsys, "hdab", "permit", "issue", app_id, "--out", str(token_file), *as_staff
    )
    assert code == 0 and issued["version"] == 1
    assert token_file.read_text() == issued["token"]
    jti = issued["jti"]
    code, shown, _ = ehds(capsys, "hdab", "permit", "show", jti, *as_user)
    assert shown["token"] == issued["token"]

    changes = tmp_path / "changes.json"
    changes.write_text('{"conditions": ["publish results"]}')
    code, amended, _ = ehds(
        capsys, "hdab", "permit", "amend", jti, "--changes", str(changes), *as_staff
    )
    assert code == 0 and amended["version"] == 2
    code, revoked, _ = ehds(
        capsys, "hdab", "permit", "revoke", jti, "--reason", "breach_of_conditions", *as_staff
    )
    assert code == 0 and revoked["status"] == "revoked"

    status_file = tmp_path / "status-list.jws"
    code, status, _ = ehds(
        capsys, "hdab", "permit", "status-list", "--url", url, "--out", str(status_file), "--json"
    )
    assert code == 0 and status_file.read_text() == status["token"]
    code, register, _ = ehds(capsys, "hdab", "permit", "list", "--url", url, "--json")
    assert [p["status"] for p in register["permits"] if p["jti"] == jti][-1] == "revoked"

    # a second application, refused with a reason code
    code, rec, _ = ehds(capsys, "hdab", "application", "apply", str(application), *as_user)
    code, rec, _ = ehds(
        capsys,
        "hdab",
        "application",
        "refuse",
        rec["id"],
        "--reason",
        "insufficient_justification",
        *as_staff,
    )
    assert code == 0 and rec["status"] == "refused"

    # text output is readable lines, not JSON
    code, text, _ = ehds(
        capsys,
        "hdab",
        "application",
        "show",
        rec["id"],
        "--url",
        url,
        "--key",
        str(keys / "staff.jwk"),
    )
    assert code == 0 and "status: refused" in text


def test_an_unreachable_service_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = ehds(capsys, "hdab", "permit", "list", "--url", url)
    assert code == 2 and out is None
    assert err.startswith(f"ehds: error: [SERVICE_UNREACHABLE] cannot reach {url}")


def test_a_missing_client_key_is_config_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = ehds(capsys, "node", "status", "--key", str(tmp_path / "typo.jwk"), "--json")
    assert code == 2 and orjson.loads(err)["error"]["code"] == "CONFIG_INVALID"
