"""Starting a site's SuperNode so that only the gateway's own ClientApp can run.

A site runs two processes: the Flower SuperNode, started with ``--isolation
process`` (it launches no ClientApp itself) and a SuperExec secret guarding its
Runtime API, and :mod:`federation.site_executor`, which holds the same secret,
acquires every task and serves it with the installed ClientApp after checking
the run's app against the permit. This module only builds their command lines
and reads the executor's runs file; it imports no Flower code, so the gateway
and the loopback deployment can use it cheaply. Both
:class:`federation.deployment.LocalDeployment` and ``gateway.supernode`` start
sites this way.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from federation.devca import ServerTls
from federation.errors import JobConfigError

#: SuperNode flags the site runtime sets itself; a configured command must not set them.
OWNED_FLAGS = (
    "--isolation",
    "--host",
    "--port",
    "--superexec-auth-secret-file",
    "--ssl-certfile",
    "--ssl-keyfile",
    "--ssl-ca-certfile",
)
SECRET_FILE = "superexec.secret"
RUNS_FILE = "runs.jsonl"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RuntimeEndpoint:
    """Where a SuperNode serves its Runtime API and how the executor authenticates to it."""

    host: str
    port: int
    secret_file: Path
    runs_file: Path
    tls: ServerTls | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def prepare_runtime(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ServerTls | None = None,
) -> RuntimeEndpoint:
    """A private folder with a fresh SuperExec secret (0600) and the runs file's place."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    secret = directory / SECRET_FILE
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_hex(32).encode())
    return RuntimeEndpoint(
        host=host,
        port=port or free_port(host),
        secret_file=secret,
        runs_file=directory / RUNS_FILE,
        tls=tls,
    )


def supernode_args(endpoint: RuntimeEndpoint) -> list[str]:
    """The SuperNode flags that hand every ClientApp task to the site's executor."""
    args = [
        "--isolation",
        "process",
        "--host",
        endpoint.host,
        "--port",
        str(endpoint.port),
        "--superexec-auth-secret-file",
        str(endpoint.secret_file),
    ]
    if endpoint.tls is not None:
        args += [
            "--ssl-certfile",
            str(endpoint.tls.server_cert),
            "--ssl-keyfile",
            str(endpoint.tls.server_key),
            "--ssl-ca-certfile",
            str(endpoint.tls.ca_cert),
        ]
    return args


def trusted_supernode_command(command: Sequence[str], endpoint: RuntimeEndpoint) -> list[str]:
    """A configured SuperNode command plus the runtime flags; refused if it sets them itself."""
    owned = [arg for arg in command if arg.split("=", 1)[0] in OWNED_FLAGS and arg.startswith("--")]
    if owned:
        raise JobConfigError(
            "the SuperNode command must not set "
            + ", ".join(sorted({a.split("=", 1)[0] for a in owned}))
            + ": the gateway sets them so that only its own ClientApp runs"
        )
    if not command:
        raise JobConfigError("no SuperNode command configured")
    return [*command, *supernode_args(endpoint)]


def executor_command(
    endpoint: RuntimeEndpoint, *, python: str = sys.executable, parent_pid: int | None = None
) -> list[str]:
    """The command line of the site's executor (:mod:`federation.site_executor`)."""
    args = [
        python,
        "-m",
        "federation.site_executor",
        "--runtime-api-address",
        endpoint.address,
        "--superexec-auth-secret-file",
        str(endpoint.secret_file),
        "--runs-file",
        str(endpoint.runs_file),
    ]
    if endpoint.tls is not None:
        args += ["--root-certificates", str(endpoint.tls.ca_cert)]
    else:
        args.append("--insecure")
    if parent_pid is not None:
        args += ["--parent-pid", str(parent_pid)]
    return args


@dataclass(frozen=True)
class RunRecord:
    """One served task: the Flower run, the app digest it brought and what the site answered."""

    run_id: int
    app_digest: str | None
    operation: str
    outcome: str
    at: int
    #: When the coordinator created the message and when each phase at the site
    #: ended (``time.time()``; see :mod:`federation.timeline`): timing only.
    sent_at: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)


def append_run(path: Path, record: RunRecord) -> None:
    with path.open("ab") as fh:
        fh.write(orjson.dumps(asdict(record)) + b"\n")


def recent_runs(path: Path | None, limit: int = 20) -> list[dict[str, Any]]:
    """Per Flower run (newest last): the app digest it used, tasks served and refused."""
    if path is None or not path.exists():
        return []
    runs: dict[int, dict[str, Any]] = {}
    for line in path.read_bytes().splitlines():
        try:
            rec = orjson.loads(line)
            run_id = int(rec["run_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a line cut short by a crash
        entry = runs.pop(run_id, None) or {
            "run_id": run_id,
            "app_digest": rec.get("app_digest"),
            "tasks": 0,
            "refused": 0,
        }
        entry["tasks"] += 1
        if rec.get("outcome") != "ok":
            entry["refused"] += 1
        entry["last_outcome"] = rec.get("outcome")
        entry["last_at"] = rec.get("at")
        runs[run_id] = entry  # re-inserted: dict order is "most recently active last"
    return list(runs.values())[-limit:]


__all__ = [
    "OWNED_FLAGS",
    "RunRecord",
    "RuntimeEndpoint",
    "append_run",
    "executor_command",
    "free_port",
    "prepare_runtime",
    "recent_runs",
    "supernode_args",
    "trusted_supernode_command",
]
