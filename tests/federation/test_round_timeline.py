"""The bench's per-phase timeline joins coordinator exchanges with the sites' task marks."""

from __future__ import annotations

from pathlib import Path

import orjson

from federation.job import RoundReport
from federation.site_runtime import RunRecord, append_run
from federation.testing.round_timeline import PHASES, format_timelines, round_timelines
from federation.timeline import mark, recording


def _report(rnd: int, started: float, received: float) -> RoundReport:
    return RoundReport(
        round=rnd,
        model_hash="sha256:" + "0" * 64,
        sites=["a"],
        failed={},
        rows=10,
        trees=1,
        bytes_sent={"a": 1},
        seconds=received - started,
        exchanges=[{"started": started, "pushed": started + 0.1, "received": received}],
    )


def test_marks_are_recorded_only_while_recording() -> None:
    mark("permit_check")  # nobody listens: no effect, no error
    with recording() as marks:
        mark("permit_check")
        mark("training")
    mark("feature_load")
    assert list(marks) == ["permit_check", "training"]
    assert marks["permit_check"] <= marks["training"]


def test_round_timeline_phases_add_up_to_the_exchange(tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    t = 1000.0
    site = {
        "acquired": t + 2.0,
        "task_pull": t + 2.1,
        "permit_check": t + 2.3,
        "feature_load": t + 2.4,
        "training": t + 3.4,
        "reply_push": t + 3.5,
    }
    append_run(runs, RunRecord(7, None, "train", "ok", int(t), sent_at=t + 0.1, phases=site))
    append_run(runs, RunRecord(7, None, "evaluate", "ok", int(t), phases=site))
    (row,) = round_timelines([_report(1, t, t + 4.0)], [runs, tmp_path / "absent.jsonl"])
    assert abs(row["SuperNode pick-up wait"] - 1.9) < 1e-9
    assert abs(row["training"] - 1.0) < 1e-9
    assert abs(sum(row[p] for p in PHASES) - row["exchange"]) < 1e-9
    assert row["sites"] == 1.0
    assert len(format_timelines([row])) == len(PHASES) + 3
    assert orjson.loads(runs.read_bytes().splitlines()[0])["phases"] == site
