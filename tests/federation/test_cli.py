"""``ehds train``: argument handling and fail-closed errors (engines are covered elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.flower_app import released_app
from federation.testing.devpermit import build_permit_world
from gateway.cli import main


def test_train_is_listed_with_both_engines(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--engine" in out and "simulation" in out and "deployment" in out and "--json" in out


def test_unreadable_job_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "job.json"
    bad.write_text('{"job_id": "x"}')
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ehds: error: [FED_JOB_CONFIG]") and "Traceback" not in err
    assert main(["train", str(tmp_path / "missing.json")]) == 2
    assert "[FED_JOB_CONFIG]" in capsys.readouterr().err


def test_permit_show_names_the_authorised_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The case officer sees which app (digest) and gateway ClientApp version a permit authorises."""
    spec = "sha256:" + "a" * 64
    pinned = build_permit_world(tmp_path / "pinned", holders=["site-a"], spec_hash=spec)
    assert main(["permit", "show", str(pinned.root / "permit.jws")]) == 0
    out = capsys.readouterr().out
    app = released_app()
    assert f"authorised app: {app['digest']}" in out
    assert app["clientapp"] in out and app["clientapp_version"] in out
    bare = build_permit_world(tmp_path / "bare", holders=["site-a"], spec_hash=spec, pin_app=False)
    assert main(["permit", "show", str(bare.root / "permit.jws")]) == 0
    assert "authorised app: none named" in capsys.readouterr().out
