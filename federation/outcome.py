"""Is a finished run worth releasing? And, when it is not, a card that says why.

A federated run can "finish" without producing anything usable: every tree a
single leaf (the model predicts one constant for everyone, e.g. when every
site's data was too small to split under the permit's leaf floor), or no site
returning evaluation metrics (so nobody can say how good the model is). Such a
run must not be released as ``completed``: the coordinator fails it with a
stable code, Flower records the run as failed, ``ehds train`` exits non-zero,
and ``model_card.json`` names the reason instead of describing a model.

Pure functions over the tree pack and run state, plus one small writer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from federation.errors import DegenerateModelError, FederationError, NoEvaluationError

CARD_FORMAT = "ehds-model-card/1"
CARD_FILE = "model_card.json"

REASONS: dict[str, str] = {
    "FED_DEGENERATE_MODEL": "every tree predicts one constant: the model ignores its inputs",
    "FED_NO_EVALUATION": "no site returned evaluation metrics: the model's quality is unknown",
    "FED_TOO_FEW_SITES": "fewer sites took part than the job requires",
    "FED_ACCESS_DENIED": "the permit or the coordinator's request was refused",
}


def is_constant(pack: Mapping[str, Any]) -> bool:
    """True when the model gives the same output for every input (no trees, or no split)."""
    for tree in pack.get("trees", []):
        left = np.asarray(tree["left_children"])
        values = np.asarray(tree["split_conditions"])[left == -1]
        if values.size and not np.all(values == values[0]):
            return False
    return True


def check_releasable(
    pack: Mapping[str, Any], metrics: Mapping[str, float], *, evaluation_permitted: bool
) -> None:
    """Raise the reason a finished run must not be released, if there is one.

    Missing metrics fail the run only when the permit allows them
    (``aggregate_metrics``): then every site withheld or failed its evaluation.
    """
    if is_constant(pack):
        raise DegenerateModelError(
            f"the model is constant ({len(pack.get('trees', []))} tree(s), no effective split)"
        )
    if evaluation_permitted and not metrics:
        raise NoEvaluationError("no site returned evaluation metrics for the final model")


def failure_card(
    *,
    job_id: str,
    permit: str | None,
    spec_hash: str,
    error: FederationError | str,
    rounds: int,
    sites_contributed: list[str],
    sites_failed: Mapping[str, str],
) -> dict[str, Any]:
    """The card of a run that released no model: codes, counts and site ids only."""
    code = error if isinstance(error, str) else error.code
    return {
        "format": CARD_FORMAT,
        "status": "failed",
        "model": None,
        "error_code": code,
        "reason": REASONS.get(code, "the run failed; see error_code"),
        "job": job_id,
        "permit": permit,
        "spec_hash": spec_hash,
        "rounds": rounds,
        "sites_contributed": list(sites_contributed),
        "sites_failed": dict(sites_failed),
        "released_at": None,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_card(out_dir: Path, card: Mapping[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CARD_FILE
    path.write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


__all__ = ["REASONS", "check_releasable", "failure_card", "is_constant", "write_card"]
