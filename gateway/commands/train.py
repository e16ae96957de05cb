"""``ehds train``: run a permit-bound federated XGBoost training job.

The job file is a ``federation.job.TrainingJob`` as JSON: the permit token,
the data user's request-signing key, the feature spec (and its hash), the
strategy and rounds, where the coordinator's audit events go, and - for the
simulation engine or a loopback deployment - one site configuration per data
holder (data source, permit trust material, audit sink).

``--engine simulation`` (default) runs Flower's Simulation Engine in this
process; ``--engine deployment`` starts a SuperLink and one SuperNode per
site on loopback with TLS and SuperNode authentication and submits the run
with ``flwr run``. Progress (one line per round) goes to stderr; ``--json``
prints the result (counts, hashes, site ids; no data) as one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="run a permit-bound federated XGBoost job (Flower simulation or deployment)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("job", type=Path, help="training job (JSON, federation.job.TrainingJob)")
    parser.add_argument("--engine", choices=("simulation", "deployment"), default="simulation")
    parser.add_argument("--rounds", type=int, help="override the job's rounds")
    parser.add_argument("--strategy", choices=("bagging", "cyclic"), help="override the strategy")
    parser.add_argument("--output-dir", type=Path, help="override where the model and card go")
    parser.add_argument(
        "--workdir", type=Path, help="deployment: where certificates, keys and logs go"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from federation.job import RoundReport, TrainingJob
    from federation.run import train

    logging.getLogger("flwr").setLevel(logging.WARNING)  # our own progress lines instead

    job = TrainingJob.from_file(args.job)
    changes: dict[str, Any] = {}
    if args.rounds is not None:
        changes["rounds"] = args.rounds
    if args.strategy is not None:
        changes["strategy"] = args.strategy
    if args.output_dir is not None:
        changes["output_dir"] = str(args.output_dir)
    if changes:
        job = dataclasses.replace(job, **changes)

    def progress(report: RoundReport) -> None:
        failed = f", failed: {','.join(sorted(report.failed))}" if report.failed else ""
        print(
            f"round {report.round}/{job.rounds}: {len(report.sites)} site(s), "
            f"{report.trees} new tree(s), {sum(report.bytes_sent.values())} bytes, "
            f"{report.seconds:.1f}s{failed}",
            file=sys.stderr,
            flush=True,
        )

    deployment = None
    if args.engine == "deployment":
        from federation.deployment import DeploymentConfig

        workdir = args.workdir or Path(job.output_dir) / "deployment"
        deployment = DeploymentConfig(workdir=workdir)
    print(
        f"training {job.job_id}: {job.strategy}, {job.rounds} round(s), engine {args.engine}",
        file=sys.stderr,
    )
    result = train(job, engine=args.engine, progress=progress, deployment=deployment)
    if args.json:
        print(orjson.dumps(result.to_dict()).decode())
    else:
        print(f"status: {result.status}" + (f" [{result.error_code}]" if result.error_code else ""))
        print(f"sites contributed: {', '.join(result.contributing_sites) or '-'}")
        if result.failed_sites:
            failed = ", ".join(f"{s} ({r})" for s, r in sorted(result.failed_sites.items()))
            print(f"sites failed: {failed}")
        for name, value in sorted(result.metrics.items()):
            print(f"{name}: {value:.4f}")
        if result.model_card:
            print(f"model: {result.model_ubj} (card {result.model_card})")
    return 0 if result.status == "completed" else 1
