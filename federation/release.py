"""Releasing the final model: files, model card, ``model.released`` event.

The released files are rebuilt from the global tree pack, so they carry no
per-node statistics either (``sum_hessian`` etc. are zero). The card names
what the audit trail proves: the permit, the spec hash, who contributed, and
the signed checkpoint that covers every event of the run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from federation import trees, ubj
from federation.errors import ModelFormatError
from federation.holdout import DESCRIPTION
from federation.job import TrainingJob
from federation.permit_view import PermitPlan
from federation.ports import AuditSink, CheckpointSource
from federation.strategy import RunState

CARD_FORMAT = "ehds-model-card/1"


@dataclass(frozen=True)
class ReleasedModel:
    model_hash: str
    ubj_path: Path
    json_path: Path
    card_path: Path
    checkpoint: dict[str, object] | None


def _checkpoint(audit: AuditSink) -> dict[str, object] | None:
    if isinstance(audit, CheckpointSource):
        return dict(audit.checkpoint())
    return None


def released_model_hash(path: str | Path) -> str:
    """The ``model_hash`` of a released model file (``model.ubj`` or ``model.json``).

    Recomputed from the file the way the coordinator computed it before
    logging ``model.released`` (the hash of the canonical tree pack), so a
    third party holding only the file can compare it with the audit log.
    Raises :class:`ModelFormatError` for a file that is not such a model.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"cannot read model file: {type(exc).__name__}") from None
    try:
        document = orjson.loads(data) if data[:2] == b'{"' else ubj.loads(data)
    except ModelFormatError:
        raise
    except Exception:
        raise ModelFormatError("model file is neither XGBoost UBJ nor JSON") from None
    if not isinstance(document, Mapping):
        raise ModelFormatError("model file does not hold an XGBoost model document")
    try:
        return trees.pack_hash(trees.pack_from_model(document))
    except ModelFormatError:
        raise
    except Exception:
        raise ModelFormatError("model file does not hold an XGBoost model document") from None


def evaluation_card(job: TrainingJob, state: RunState) -> dict[str, object]:
    """How the card's metrics were measured, in words a reader cannot misread.

    With ``eval_fraction`` 0 the sites score the model on the rows it was trained
    on: those numbers are filed as ``training_set_metrics``, never as ``metrics``.
    Per-site counts are those the sites disclosed (each at or above the permit's
    floor; a site below it reports nothing).
    """
    held_out = job.eval_fraction > 0
    return {
        "metrics" if held_out else "training_set_metrics": dict(state.metrics),
        "metrics_sites": list(state.evaluated_sites),
        "evaluation": {
            "on": "held_out_patients" if held_out else "training_set",
            "split": DESCRIPTION,
            "split_key": job.split_key or job.job_id,
            "eval_fraction": job.eval_fraction,
            "rows_per_site": dict(state.evaluated_rows),
        },
    }


def model_json(pack: Mapping[str, Any]) -> bytes:
    return orjson.dumps(trees.model_document(pack), option=orjson.OPT_SERIALIZE_NUMPY)


def release_model(
    pack: Mapping[str, Any],
    job: TrainingJob,
    plan: PermitPlan,
    state: RunState,
    audit: AuditSink,
    out_dir: Path,
) -> ReleasedModel:
    out_dir.mkdir(parents=True, exist_ok=True)
    model_hash = trees.pack_hash(pack)
    ubj_path = out_dir / "model.ubj"
    json_path = out_dir / "model.json"
    ubj_path.write_bytes(trees.model_ubj(pack))
    json_path.write_bytes(model_json(pack))
    checkpoint = _checkpoint(audit)
    details: dict[str, object] = {
        "model_hash": model_hash,
        "rounds": len(state.rounds),
        "sites": len(state.contributors),
    }
    if checkpoint is not None:
        if isinstance(checkpoint.get("size"), int):
            details["checkpoint_size"] = checkpoint["size"]
        if isinstance(checkpoint.get("root"), str):
            details["checkpoint_root"] = checkpoint["root"]
    audit.record(
        "model.released",
        subject={"permit": plan.jti, "job": job.job_id, "model": f"{job.job_id}.model"},
        details=details,
    )
    card = {
        "format": CARD_FORMAT,
        "status": "completed",
        "model": f"{job.job_id}.model",
        "model_hash": model_hash,
        "files": {"ubj": ubj_path.name, "json": json_path.name},
        "permit": plan.jti,
        "permit_hash": plan.permit_hash,
        "spec_hash": job.spec_hash,
        "objective": pack["objective"],
        "num_class": pack["num_class"],
        "base_score": [float(v) for v in pack["base_score"]],
        "features": list(pack["feature_names"]),
        "trees": len(pack["trees"]),
        "strategy": job.strategy,
        "rounds": len(state.rounds),
        "rounds_planned": job.rounds,
        "local_rounds": job.params.local_rounds,
        "params": {
            "eta": job.params.eta,
            "max_depth": job.params.max_depth,
            "min_child_weight": job.params.min_child_weight,
        },
        "sites_contributed": list(state.contributors),
        "sites_failed": dict(state.failed),
        "per_round": [
            {"round": r.round, "sites": r.sites, "model_hash": r.model_hash, "trees": r.trees}
            for r in state.rounds
        ],
        **evaluation_card(job, state),
        "audit_checkpoint": checkpoint,
        "released_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "node_statistics": "stripped",
    }
    card_path = out_dir / "model_card.json"
    card_path.write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return ReleasedModel(model_hash, ubj_path, json_path, card_path, checkpoint)
