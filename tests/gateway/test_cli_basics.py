"""``ehds`` itself: fast --version/--help, quiet on a closed pipe, JSON errors under --json."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "flwr", "xgboost", "aiohttp", "permits", "fhir_adapters", "federation")


def modules_loaded_by(*argv: str) -> set[str]:
    """Which heavy packages a fresh interpreter imports to answer ``ehds argv``."""
    probe = (
        "import sys; from gateway.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return set(eval(done.stderr.strip().splitlines()[-1]))  # a printed list of names


def test_version_and_help_load_no_heavy_module() -> None:
    """Speed without timing: the 4-5 s were imports of SQLAlchemy, Flower, XGBoost, aiohttp."""
    assert modules_loaded_by("--version") == set()
    assert modules_loaded_by("--help") == set()


def test_help_lists_every_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("keys", "hdab", "node", "permit", "audit", "train", "demo"):
        assert f"    {name} " in out


def test_a_closed_pipe_ends_quietly() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader (``head``) has gone
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "keys", "generate"],
            cwd=ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141


def test_errors_under_json_are_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "show", str(tmp_path / "missing.jwk"), "--json"]) == 2
    err = orjson.loads(capsys.readouterr().err)
    assert set(err["error"]) == {"code", "message"} and err["error"]["code"]
    assert main(["keys", "show", "k.jwk", "--json", "--no-such-flag"]) == 2
    usage = orjson.loads(capsys.readouterr().err)
    assert usage["error"]["code"] == "USAGE" and "--no-such-flag" in usage["error"]["message"]


def test_features_hash_json(capsys: pytest.CaptureFixture[str]) -> None:
    spec = ROOT / "docs" / "examples" / "synthetic.spec.json"
    assert main(["features", "--spec", str(spec), "--hash", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["spec_hash"].startswith("sha256:")
