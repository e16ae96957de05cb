"""``ehds train``: argument handling and fail-closed errors (engines are covered elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
