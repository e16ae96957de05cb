"""Where a deployment round's seconds go: the coordinator's exchanges joined with the
site executors' task marks (:mod:`federation.timeline`), for the bench.

Timestamps come from one machine (loopback deployment), so differences across
processes are meaningful; on separate machines clock skew would enter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from statistics import median
from typing import Any

import orjson

from federation.job import RoundReport

#: Phases of one site's part of a round, in order.
PHASES = (
    "coordinator send",
    "SuperNode pick-up wait",
    "process start + imports",
    "task pull",
    "permit check",
    "feature load",
    "training",
    "reply push",
    "coordinator receipt",
)
_SITE_MARKS = ("acquired", "task_pull", "permit_check", "feature_load", "training", "reply_push")


def _records(runs_files: Iterable[Path]) -> list[dict[str, Any]]:
    out = []
    for path in runs_files:
        if not path.exists():
            continue
        for line in path.read_bytes().splitlines():
            rec = orjson.loads(line)
            phases = rec.get("phases") or {}
            if rec.get("operation") == "train" and all(k in phases for k in _SITE_MARKS):
                out.append(phases)
    return out


def site_phases(exchange: dict[str, float], marks: dict[str, float]) -> dict[str, float]:
    """One site's task in one exchange, as seconds per phase."""
    return {
        "coordinator send": exchange["pushed"] - exchange["started"],
        "SuperNode pick-up wait": marks["acquired"] - exchange["pushed"],
        "process start + imports": 0.0,  # the site's executor is warm: no process per task
        "task pull": marks["task_pull"] - marks["acquired"],
        "permit check": marks["permit_check"] - marks["task_pull"],
        "feature load": marks["feature_load"] - marks["permit_check"],
        "training": marks["training"] - marks["feature_load"],
        "reply push": marks["reply_push"] - marks["training"],
        "coordinator receipt": exchange["received"] - marks["reply_push"],
    }


def round_timelines(
    rounds: Sequence[RoundReport], runs_files: Iterable[Path]
) -> list[dict[str, float]]:
    """Per train round: the median over sites of each phase, and the round's wall time."""
    records = _records(runs_files)
    out = []
    for report in rounds:
        if not report.exchanges:
            continue
        exchange = report.exchanges[0]
        tasks = [
            m for m in records if exchange["pushed"] - 1.0 <= m["acquired"] <= exchange["received"]
        ]
        if not tasks:
            continue
        per_site = [site_phases(exchange, m) for m in tasks]
        row = {phase: median(p[phase] for p in per_site) for phase in PHASES}
        row["round"] = float(report.round)
        row["sites"] = float(len(tasks))
        row["exchange"] = exchange["received"] - exchange["started"]
        row["round total"] = report.seconds
        out.append(row)
    return out


def format_timelines(rows: Sequence[dict[str, float]]) -> list[str]:
    """A table: one column per round, one line per phase (median over sites, seconds)."""
    if not rows:
        return ["timeline: no round could be joined with the sites' task marks"]
    head = f"{'phase (median over sites, s)':<32}" + "".join(
        f"{'round ' + str(int(r['round'])):>10}" for r in rows
    )
    lines = [head]
    for phase in (*PHASES, "exchange", "round total"):
        lines.append(f"{phase:<32}" + "".join(f"{r[phase]:>10.2f}" for r in rows))
    return lines


__all__ = ["PHASES", "format_timelines", "round_timelines", "site_phases"]
