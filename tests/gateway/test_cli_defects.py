"""Defects an operator met when running the tool by hand (issue #13), one test each."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main


@pytest.fixture
def taken_port() -> Iterator[str]:
    """A port in use: should the service get past its keys, it stops instead of serving."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield str(s.getsockname()[1])


def test_a_configured_signing_key_that_is_missing_is_config_invalid(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    taken_port: str,
) -> None:
    """``EHDS_AUDIT_SIGNING_KEY=typo.jwk ehds hdab serve`` used to create and sign with a new key."""
    typo = tmp_path / "typo.jwk"
    monkeypatch.setenv("EHDS_AUDIT_SIGNING_KEY", str(typo))
    code = main(["hdab", "serve", "--data-dir", str(tmp_path), "--port", taken_port])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"ehds: error: [CONFIG_INVALID] signing key not found: {typo} ")
    assert not typo.exists()


def test_a_configured_hdab_signing_key_that_is_missing_is_config_invalid(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    taken_port: str,
) -> None:
    typo = tmp_path / "permits.jwk"
    monkeypatch.setenv("EHDS_HDAB_SIGNING_KEY", str(typo))
    code = main(["hdab", "serve", "--data-dir", str(tmp_path), "--port", taken_port])
    assert code == 2
    assert "[CONFIG_INVALID] signing key not found" in capsys.readouterr().err
    assert not typo.exists()
