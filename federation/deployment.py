"""Deployment engine: one SuperLink and one SuperNode per data holder.

:class:`LocalDeployment` starts the real Flower processes on loopback with TLS
from a dev CA (:mod:`federation.devca`) and SuperNode authentication
(``--enable-supernode-auth``; each SuperNode's public key registered with
``flwr supernode register``), then submits the job with ``flwr run``. Every
process is started in its own session and stopped by its PID (its process
group holds the ServerApp subprocesses it spawned). Real multi-site
deployments run the same commands on separate hosts; see docs/deployment.md.

Each site is a SuperNode with ``--isolation process`` plus the site's own
executor (:mod:`federation.site_runtime`, :mod:`federation.site_executor`):
ClientApp tasks run the installed ClientApp after the run's app bundle was
checked against the permit, never code from the bundle. ``flwr run`` submits
the code-free app of :mod:`federation.flower_app`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from federation.devca import ServerTls, make_dev_ca, make_node_keys
from federation.errors import EngineError, JobConfigError
from federation.flower_app import PROJECT_ROOT, write_app
from federation.job import RoundReport, SiteConfig, TrainingJob, TrainingResult
from federation.run import QUIET_ENV
from federation.server_app import PROGRESS_FILE, RESULT_FILE
from federation.site_runtime import (
    RuntimeEndpoint,
    executor_command,
    free_port,
    prepare_runtime,
    supernode_args,
)

CONNECTION = "ehds"


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineError(f"process exited with code {proc.returncode} during start-up")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.3)
    raise EngineError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


@dataclass
class DeploymentConfig:
    """Where and how to run the local deployment."""

    workdir: Path
    host: str = "127.0.0.1"
    superlink_port: int = 0
    tls: bool = True
    node_auth: bool = True
    startup_timeout: float = 180.0
    run_timeout: float = 1800.0
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    args: list[str]


class LocalDeployment:
    """SuperLink + one SuperNode per site on loopback; a context manager."""

    def __init__(self, config: DeploymentConfig, sites: Sequence[SiteConfig]) -> None:
        if not sites:
            raise JobConfigError("a deployment needs at least one site")
        self.config = config
        self.sites = list(sites)
        self.root = Path(config.workdir)
        self.procs: list[_Proc] = []
        self.supernodes: dict[str, _Proc] = {}
        self.executors: dict[str, _Proc] = {}
        self.runtimes: dict[str, RuntimeEndpoint] = {}
        self.node_ids: dict[str, int] = {}
        self.port = config.superlink_port or free_port(config.host)
        self.flwr_home = self.root / "flwr-home"
        self.tls: ServerTls | None = None

    # -- process helpers ----------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(QUIET_ENV)
        env["FLWR_HOME"] = str(self.flwr_home)
        env["PATH"] = f"{self.config.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env

    def _bin(self, name: str) -> str:
        return str(self.config.bin_dir / name)

    def _spawn(self, name: str, args: list[str]) -> _Proc:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as fh:
            popen = subprocess.Popen(
                args,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.root,
                start_new_session=True,  # its own process group: stopped together, by PID
            )
        proc = _Proc(name, popen, log, list(args))
        self.procs.append(proc)
        return proc

    def _flwr(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self._bin("flwr"), *args],
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> LocalDeployment:
        self.root.mkdir(parents=True, exist_ok=True)
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        certs = self.root / "certs"
        if self.config.tls:
            self.tls = make_dev_ca(certs, hosts=("localhost", self.config.host))
        self._write_connection()
        args = [
            self._bin("flower-superlink"),
            "--host",
            self.config.host,
            "--port",
            str(self.port),
            "--disable-runtime-dependency-installation",
            "--database",
            str(self.root / "superlink.db"),
        ]
        if self.tls is not None:
            args += [
                "--ssl-ca-certfile",
                str(self.tls.ca_cert),
                "--ssl-certfile",
                str(self.tls.server_cert),
                "--ssl-keyfile",
                str(self.tls.server_key),
            ]
        else:
            args.append("--insecure")
        if self.config.node_auth:
            args.append("--enable-supernode-auth")
        link = self._spawn("superlink", args)
        wait_for_port(self.config.host, self.port, self.config.startup_timeout, link.popen)
        for site in self.sites:
            self.start_supernode(site)
        return self

    def _write_connection(self) -> None:
        lines = [
            "[superlink]",
            f'default = "{CONNECTION}"',
            "",
            f"[superlink.{CONNECTION}]",
            f'address = "{self.config.host}:{self.port}"',
        ]
        if self.tls is not None:
            lines.append(f'root-certificates = "{self.tls.ca_cert}"')
        else:
            lines.append("insecure = true")
        (self.flwr_home / "config.toml").write_text("\n".join(lines) + "\n")

    def start_supernode(self, site: SiteConfig) -> None:
        """The site's SuperNode (``--isolation process``) and its executor."""
        site_file = self.root / "sites" / f"{site.site_id}.json"
        site_file.parent.mkdir(parents=True, exist_ok=True)
        site_file.write_bytes(orjson.dumps(site.to_dict(), option=orjson.OPT_INDENT_2))
        # the Runtime API reuses the SuperLink's loopback certificate (SAN 127.0.0.1)
        runtime = prepare_runtime(
            self.root / "runtime" / site.site_id, host=self.config.host, tls=self.tls
        )
        self.runtimes[site.site_id] = runtime
        args = [
            self._bin("flower-supernode"),
            "--superlink",
            f"{self.config.host}:{self.port}",
            *supernode_args(runtime),
            "--node-config",
            f'site-config="{site_file}"',
            "--max-retries",
            "0",
        ]
        if self.tls is not None:
            args += ["--root-certificates", str(self.tls.ca_cert)]
        else:
            args.append("--insecure")
        if self.config.node_auth:
            keys = make_node_keys(self.root / "node-keys", site.site_id)
            self.node_ids[site.site_id] = self.register(keys.public_key, site.site_id)
            args += ["--auth-supernode-private-key", str(keys.private_key)]
        self.supernodes[site.site_id] = self._spawn(f"supernode-{site.site_id}", args)
        self.executors[site.site_id] = self._spawn(
            f"executor-{site.site_id}",
            executor_command(runtime, python=str(self.config.bin_dir / "python")),
        )

    def register(self, public_key: Path, name: str) -> int:
        """``flwr supernode register``: the SuperLink only admits registered keys."""
        done = self._flwr(
            [
                "supernode",
                "register",
                str(public_key),
                CONNECTION,
                "--name",
                name,
                "--format",
                "json",
            ],
            timeout=self.config.startup_timeout,
        )
        try:
            start = done.stdout.index("{")
            info = orjson.loads(done.stdout[start:])
            return int(info["node-id"])
        except (ValueError, KeyError, orjson.JSONDecodeError) as exc:
            raise EngineError(
                f"registering SuperNode {name} failed (exit {done.returncode})"
            ) from exc

    def kill_site(self, site_id: str) -> None:
        """Stop one site abruptly (SIGKILL to its SuperNode's and executor's process groups)."""
        for proc in (self.supernodes[site_id], self.executors[site_id]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM every process group we started (by PID), SIGKILL what lingers."""
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):  # stragglers in the group
                os.killpg(proc.popen.pid, signal.SIGKILL)

    def __enter__(self) -> LocalDeployment:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- running a job ------------------------------------------------------------
    def app_dir(self, job_file: Path) -> Path:
        """The code-free Flower app (:mod:`federation.flower_app`) for this job."""
        return write_app(self.root / "app", str(job_file))

    def submit(self, app: Path) -> subprocess.CompletedProcess[str]:
        """``flwr run`` of an app folder, as a data user submits one (streams until it ends)."""
        return self._flwr(
            ["run", str(app), CONNECTION, "--stream"], timeout=self.config.run_timeout
        )

    def run(
        self, job: TrainingJob, progress: Callable[[RoundReport], None] | None = None
    ) -> TrainingResult:
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in (RESULT_FILE, PROGRESS_FILE):
            (out / name).unlink(missing_ok=True)
        server_job = dataclasses.replace(job, sites=(), expected_sites=len(self.sites))
        job_file = server_job.write(self.root / f"{job.job_id}.job.json")
        app = self.app_dir(job_file)
        stop = threading.Event()
        watcher = threading.Thread(
            target=_follow_progress, args=(out / PROGRESS_FILE, progress, stop), daemon=True
        )
        watcher.start()
        try:
            done = self.submit(app)
        except subprocess.TimeoutExpired as exc:
            raise EngineError("the deployment run did not finish in time") from exc
        finally:
            time.sleep(0.5)
            stop.set()
            watcher.join(timeout=5)
        (self.root / "logs" / f"flwr-run-{job.job_id}.log").write_text(done.stdout + done.stderr)
        result_path = out / RESULT_FILE
        if not result_path.exists():
            raise EngineError(f"flwr run ended (exit {done.returncode}) without a result")
        return TrainingResult.from_dict(orjson.loads(result_path.read_bytes()))


def _follow_progress(
    path: Path, progress: Callable[[RoundReport], None] | None, stop: threading.Event
) -> None:
    seen = 0
    while True:
        finished = stop.is_set()
        if path.exists() and progress is not None:
            lines = path.read_bytes().splitlines()
            for line in lines[seen:]:
                progress(RoundReport(**orjson.loads(line)))
            seen = len(lines)
        if finished:
            return
        time.sleep(0.5)


@contextlib.contextmanager
def local_deployment(
    config: DeploymentConfig, sites: Sequence[SiteConfig]
) -> Iterator[LocalDeployment]:
    with LocalDeployment(config, sites) as deployment:
        yield deployment


def run_deployment_job(
    job: TrainingJob,
    config: DeploymentConfig | None,
    progress: Callable[[RoundReport], None] | None = None,
) -> TrainingResult:
    """Start a loopback deployment for the job's sites, run it, stop everything."""
    if config is None:
        config = DeploymentConfig(workdir=Path(job.output_dir) / "deployment")
    with local_deployment(config, job.sites) as deployment:
        result = deployment.run(job, progress)
    return result
