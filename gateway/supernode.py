"""The Flower SuperNode next to a hospital gateway: run it as a child, or report on one.

``mode = "run"`` starts the configured command (e.g. ``flower-supernode
--superlink 10.0.0.5:9092 ...``) when the gateway starts and stops it on
shutdown: SIGTERM, then SIGKILL after the shutdown timeout, by its own PID.
``mode = "connect"`` only reports whether the SuperLink's port answers.
Status never includes the command line (it may carry key paths).

In ``run`` mode the SuperNode gets ``--isolation process`` and a fresh SuperExec
secret, and the gateway starts its own executor next to it
(:mod:`federation.site_runtime`): every ClientApp task runs the gateway's
installed ClientApp after the run's app was checked against the permit, never
code from the researcher's app bundle. Status lists the app digest of each run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from federation.errors import JobConfigError
from federation.site_runtime import (
    RuntimeEndpoint,
    executor_command,
    prepare_runtime,
    recent_runs,
    trusted_supernode_command,
)
from gateway.config import FlowerSettings
from gateway.errors import ConfigError, UnavailableError


class SuperNode:
    def __init__(
        self,
        settings: FlowerSettings,
        *,
        stop_timeout: float = 10.0,
        runtime_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.stop_timeout = stop_timeout
        self.runtime_dir = runtime_dir
        self.process: asyncio.subprocess.Process | None = None
        self.executor: asyncio.subprocess.Process | None = None
        self.runtime: RuntimeEndpoint | None = None
        self.started_at: float | None = None
        self._tempdir: Path | None = None

    async def start(self) -> None:
        if self.settings.mode != "run":
            return
        if self.runtime_dir is None:
            self._tempdir = Path(tempfile.mkdtemp(prefix="ehds-supernode-"))
        self.runtime = prepare_runtime(self.runtime_dir or self._tempdir or Path("."))
        try:
            command = trusted_supernode_command(self.settings.command, self.runtime)
        except JobConfigError as exc:
            raise ConfigError(str(exc), code="SUPERNODE_COMMAND") from None
        self.process = await _spawn(command)
        self.executor = await _spawn(executor_command(self.runtime, parent_pid=os.getpid()))
        self.started_at = time.time()

    async def stop(self) -> None:
        for proc in (self.executor, self.process):
            await self._stop(proc)
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)

    async def _stop(self, proc: asyncio.subprocess.Process | None) -> None:
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=self.stop_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _superlink_reachable(self) -> bool:
        host, _, port = self.settings.superlink.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout=1.0
            )
        except (OSError, TimeoutError, ValueError):
            return False
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return True

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.settings.mode, "superlink": self.settings.superlink}
        if self.settings.mode == "off":
            return out
        if self.settings.mode == "run":
            proc = self.process
            out["running"] = proc is not None and proc.returncode is None
            out["pid"] = proc.pid if proc is not None else None
            out["exit_code"] = proc.returncode if proc is not None else None
            out["uptime_seconds"] = (
                round(time.time() - self.started_at, 1) if self.started_at else None
            )
            out["executor_running"] = self.executor is not None and self.executor.returncode is None
            out["runs"] = recent_runs(self.runtime.runs_file if self.runtime else None)
        out["superlink_reachable"] = await self._superlink_reachable()
        return out

    async def check_ready(self) -> None:
        if self.settings.mode == "run" and (
            self.process is None or self.process.returncode is not None
        ):
            raise UnavailableError("the SuperNode process is not running", code="SUPERNODE_DOWN")
        if self.settings.mode == "run" and (
            self.executor is None or self.executor.returncode is not None
        ):
            raise UnavailableError("the ClientApp executor is not running", code="EXECUTOR_DOWN")


async def _spawn(command: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )


__all__ = ["SuperNode"]
