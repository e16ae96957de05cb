"""`ehds features`: cohort summary, matrix output, refusals as one line with a code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from fhir_adapters.testing.synthetic import CohortConfig, write_ndjson
from gateway.cli import main
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[2]
DIABETES = str(ROOT / "docs/examples/diabetes.spec.json")
SYNTHETIC = str(ROOT / "docs/examples/synthetic.spec.json")


@pytest.mark.slow
def test_summary_json_and_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folders = write_ndjson(CohortConfig(n_patients=80, n_sites=2, seed=1), tmp_path / "data")
    out = tmp_path / "m.npz"
    optout = tmp_path / "optout.txt"
    first_key = orjson.loads((folders[0] / "Patient.ndjson").read_bytes().splitlines()[0])["id"]
    optout.write_text(first_key + "\n")
    rc = main(["features", "--spec", SYNTHETIC, "--source", str(folders[0]), "--out", str(out),
               "--opt-out", str(optout), "--validate", "sample", "--json"])  # fmt: skip
    assert rc == 0
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["excluded_opt_out"] == 1
    assert summary["report"]["quality"]["validation_mode"] == "sample"
    assert first_key not in orjson.dumps(summary).decode()
    data = np.load(out)
    assert data["X"].shape == (summary["rows"], summary["features"])
    assert "patient_keys" not in data


def test_human_summary_on_synthea(capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_path("synthea")
    assert main(["features", "--spec", DIABETES, "--source", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "patients 40" in out and "systolic_bp" in out and "62.5%" in out


def test_refusals_are_one_line_with_a_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folders = write_ndjson(CohortConfig(n_patients=10, n_sites=1, seed=1), tmp_path / "d")
    assert (
        main(["features", "--spec", SYNTHETIC, "--source", str(folders[0]), "--min-rows", "11"])
        == 2
    )
    err = capsys.readouterr().err
    assert "[FEATURE_COHORT_TOO_SMALL]" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"specVersion": 1}')
    assert main(["features", "--spec", str(bad), "--source", str(folders[0])]) == 2
    assert "[FEATURE_SPEC_INVALID]" in capsys.readouterr().err
    assert main(["features", "--spec", SYNTHETIC, "--hash"]) == 0
    assert capsys.readouterr().out.startswith("sha256:")
