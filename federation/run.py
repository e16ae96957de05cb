"""``federation.run.train``: the Python entry point (used by ``ehds train`` and ``ehds demo``).

``engine="simulation"`` (default) runs Flower's Simulation Engine in this
process (Ray, kept on loopback, one virtual SuperNode per configured site);
``engine="deployment"`` drives a real SuperLink with one SuperNode per site via
``flwr run`` (see :mod:`federation.deployment`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Literal

from federation.errors import EngineError, JobConfigError
from federation.job import RoundReport, TrainingJob, TrainingResult

Engine = Literal["simulation", "deployment"]

#: Environment that keeps Flower and Ray quiet and local.
QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


def quiet_environment() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def simulation_backend(num_sites: int, cpus_per_site: float = 1.0) -> dict[str, object]:
    """Ray on loopback, no dashboard, at most two CPUs; one CPU per site keeps the
    number of actors (each importing XGBoost and Flower) to the number of cores."""
    cpus = min(2, os.cpu_count() or 1)
    return {
        "client_resources": {"num_cpus": cpus_per_site, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": cpus,
            "num_gpus": 0,
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        },
    }


def run_simulation_job(
    job: TrainingJob, progress: Callable[[RoundReport], None] | None = None
) -> TrainingResult:
    if not job.sites:
        raise JobConfigError("simulation needs the job's sites (one per virtual SuperNode)")
    quiet_environment()
    from flwr.simulation import run_simulation

    from federation.client_app import SimulationSites, make_client_app
    from federation.server_app import make_server_app

    results: list[TrainingResult] = []
    run_simulation(
        server_app=make_server_app(job, engine="simulation", progress=progress, results=results),
        client_app=make_client_app(SimulationSites(job.sites)),
        num_supernodes=len(job.sites),
        backend_config=simulation_backend(len(job.sites)),  # type: ignore[arg-type]
    )
    if not results:
        raise EngineError("the simulation ended without a result")
    return results[0]


def train(
    job: TrainingJob,
    engine: Engine = "simulation",
    progress: Callable[[RoundReport], None] | None = None,
    deployment: object | None = None,
) -> TrainingResult:
    """Run ``job`` to the end; the result says what completed, who contributed, where the model is.

    Failures of the job or of sites are reported in the result (``status``,
    ``error_code``, ``failed_sites``), not raised; an engine that cannot start
    raises :class:`~federation.errors.EngineError`.
    """
    if engine == "simulation":
        return run_simulation_job(job, progress)
    if engine == "deployment":
        from federation.deployment import DeploymentConfig, run_deployment_job

        if deployment is not None and not isinstance(deployment, DeploymentConfig):
            raise JobConfigError("deployment must be a DeploymentConfig")
        return run_deployment_job(job, deployment, progress)
    raise JobConfigError(f"unknown engine {engine!r}")
