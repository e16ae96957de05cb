"""The coordinator's ServerApp (Flower Message API).

It plans the run within the permit (:mod:`federation.permit_view`), signs one
request per site and round, runs :class:`~federation.strategy.XgbStrategy`
with ``strategy.start(...)``, and releases the final model with its card.
Events: ``training.started``, ``training.round`` per round,
``training.site_failed`` per failure, ``model.released``.

In simulation the job object is handed over in-process
(:func:`make_server_app`); in deployment the ServerApp process reads it from
the file named by the run config key ``job-file``, reports progress as JSON
lines in ``<output_dir>/progress.jsonl`` and the outcome in ``result.json``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from logging import ERROR
from pathlib import Path

import orjson
from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from federation import trees, wire
from federation.errors import FederationError, JobConfigError
from federation.job import RoundReport, TrainingJob, TrainingResult
from federation.outcome import check_releasable, failure_card, write_card
from federation.permit_view import check_job, read_permit
from federation.ports import AuditSink, RequestSigner
from federation.prompt_grid import PromptGrid
from federation.release import release_model
from federation.strategy import XgbStrategy

Progress = Callable[[RoundReport], None]
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.jsonl"


def _plan(job: TrainingJob) -> TrainingJob:
    """Raise ``min_child_weight`` to the permit's leaf floor; the sites require it."""
    plan = read_permit(job.permit_token)
    floor = float(plan.min_rows_per_leaf)
    if job.params.min_child_weight < floor:
        job = dataclasses.replace(
            job, params=dataclasses.replace(job.params, min_child_weight=floor)
        )
    check_job(job, plan)
    return job


def run_coordinator(
    grid: Grid, job: TrainingJob, *, engine: str, progress: Progress | None = None
) -> TrainingResult:
    """Run the whole job on ``grid``; never raises for job/site failures (see ``status``)."""
    started = time.monotonic()
    result = TrainingResult(
        job_id=job.job_id, engine=engine, strategy=job.strategy, status="failed"
    )
    try:
        job = _plan(job)
        plan = read_permit(job.permit_token)
        audit: AuditSink = job.audit.build()
        signer: RequestSigner = job.request_signer.build()
    except FederationError as exc:
        result.error_code = exc.code
        _fail_card(job, None, result)
        return result
    except Exception as exc:
        log(ERROR, "coordinator set-up failed: %s", type(exc).__name__)
        result.error_code = JobConfigError.code
        _fail_card(job, None, result)
        return result
    initial = trees.empty_pack(
        objective=job.params.objective,
        num_feature=len(job.feature_names),
        num_class=job.params.num_class,
        base_score=job.params.fixed_base_score(),
        feature_names=job.feature_names,
    )
    expected = job.sites_expected(len(plan.holders))
    audit.record(
        "training.started",
        subject={"permit": plan.jti, "job": job.job_id},
        details={
            "spec_hash": job.spec_hash,
            "rounds": job.rounds,
            "sites": expected,
            "strategy": job.strategy,
        },
    )
    strategy = XgbStrategy(
        job,
        signer=signer,
        audit=audit,
        permit_jti=plan.jti,
        holders=plan.holders,
        expected_sites=expected,
        initial=initial,
        progress=progress,
    )
    try:
        strategy.start(
            grid,
            initial_arrays=wire.pack_record(trees.encode_pack(initial)),
            num_rounds=job.rounds,
            timeout=job.round_timeout,
        )
        state = strategy.state
        check_releasable(  # never release a useless model
            state.global_pack,
            state.metrics,
            evaluation_permitted="aggregate_metrics" in plan.outputs,
        )
        released = release_model(state.global_pack, job, plan, state, audit, Path(job.output_dir))
        result.status = "completed"
        result.model_hash = released.model_hash
        result.model_ubj = str(released.ubj_path)
        result.model_json = str(released.json_path)
        result.model_card = str(released.card_path)
        result.checkpoint = released.checkpoint
    except FederationError as exc:
        result.error_code = exc.code
    except Exception as exc:
        log(
            ERROR,
            "coordinator failed: %s",
            type(exc).__name__,
            exc_info=bool(os.environ.get("EHDS_DEBUG")),
        )
        result.error_code = "FED_INTERNAL"
    close = getattr(audit, "close", None)
    if callable(close):
        close()
    state = strategy.state
    result.rounds = list(state.rounds)
    result.contributing_sites = list(state.contributors)
    result.failed_sites = dict(state.failed)
    result.metrics = dict(state.metrics)
    result.wall_seconds = time.monotonic() - started
    if result.status != "completed":
        _fail_card(job, plan.jti, result)
    return result


def _fail_card(job: TrainingJob, permit: str | None, result: TrainingResult) -> None:
    """Say why in ``model_card.json``; remove model files an earlier run left there."""
    out = Path(job.output_dir)
    for name in ("model.ubj", "model.json"):
        (out / name).unlink(missing_ok=True)
    card = failure_card(
        job_id=job.job_id,
        permit=permit,
        spec_hash=job.spec_hash,
        error=result.error_code or "FED_ERROR",
        rounds=len(result.rounds),
        sites_contributed=result.contributing_sites,
        sites_failed=result.failed_sites,
    )
    result.model_card = str(write_card(out, card))


class RunFailedError(FederationError):
    """Raised by the deployment ServerApp so that Flower records the run as failed."""

    code = "FED_RUN_FAILED"


def make_server_app(
    job: TrainingJob,
    *,
    engine: str = "simulation",
    progress: Progress | None = None,
    results: list[TrainingResult] | None = None,
) -> ServerApp:
    """A ServerApp bound to an in-process job (simulation); results are appended."""
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        outcome = run_coordinator(grid, job, engine=engine, progress=progress)
        if results is not None:
            results.append(outcome)

    return server


def _file_progress(path: Path) -> Progress:
    def report(r: RoundReport) -> None:
        with path.open("ab") as fh:
            fh.write(orjson.dumps(dataclasses.asdict(r)) + b"\n")

    return report


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Deployment entry point: ``flwr run . <superlink> --run-config job-file=...``."""
    job_file = context.run_config.get("job-file")
    if not isinstance(job_file, str) or not job_file:
        raise JobConfigError("run config has no 'job-file'")
    job = TrainingJob.from_file(job_file)
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    outcome = run_coordinator(
        PromptGrid(grid), job, engine="deployment", progress=_file_progress(out / PROGRESS_FILE)
    )
    (out / RESULT_FILE).write_bytes(orjson.dumps(outcome.to_dict(), option=orjson.OPT_INDENT_2))
    if outcome.status != "completed":  # Flower then shows the run as finished:failed
        raise RunFailedError(f"training failed [{outcome.error_code}]")
