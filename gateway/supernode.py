"""The Flower SuperNode next to a hospital gateway: supervise it as a child, or report on one.

``mode = "run"`` supervises the configured command (e.g. ``flower-supernode
--superlink 10.0.0.5:9092 ...``) with :class:`gateway.supervisor.Supervised`:
started only once the gateway has bound its port (a gateway that cannot start
leaves nothing behind), its output in the gateway's log, restarted with backoff
when it dies, gone when the gateway goes (even by SIGKILL). ``mode = "connect"``
only reports whether the SuperLink's port answers. Status never includes a
command line (it may carry key paths).

In ``run`` mode the SuperNode gets ``--isolation process`` and a fresh SuperExec
secret, and the gateway supervises its own executor next to it
(:mod:`federation.site_runtime`): every ClientApp task runs the gateway's
installed ClientApp after the run's app was checked against the permit, never
code from the researcher's app bundle. Status lists the app digest of each run.
More children can be added with :meth:`SuperNode.add_child`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
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
from gateway.supervisor import Supervised

SUPERNODE = "supernode"
EXECUTOR = "executor"


class SuperNode:
    def __init__(
        self,
        settings: FlowerSettings,
        *,
        stop_timeout: float = 10.0,
        runtime_dir: Path | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        self.settings = settings
        self.stop_timeout = stop_timeout
        self.children: dict[str, Supervised] = {}
        self.runtime: RuntimeEndpoint | None = None
        self._tempdir: Path | None = None
        if settings.mode != "run":
            return
        if runtime_dir is None:
            self._tempdir = Path(tempfile.mkdtemp(prefix="ehds-supernode-"))
        self.runtime = prepare_runtime(runtime_dir or self._tempdir or Path("."))
        try:
            command = trusted_supernode_command(settings.command, self.runtime)
        except JobConfigError as exc:
            self._cleanup()
            raise ConfigError(str(exc), code="SUPERNODE_COMMAND") from None
        backoff = {"backoff_initial": backoff_initial, "backoff_max": backoff_max}
        self.add_child(SUPERNODE, command, **backoff)
        self.add_child(EXECUTOR, executor_command(self.runtime, parent_pid=os.getpid()), **backoff)

    def add_child(self, name: str, command: Sequence[str], **options: Any) -> Supervised:
        """Supervise one more command next to the SuperNode (started and stopped with it)."""
        options.setdefault("stop_timeout", self.stop_timeout)
        child = Supervised(name, command, **options)
        self.children[name] = child
        return child

    @property
    def supervised(self) -> Supervised | None:
        return self.children.get(SUPERNODE)

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        child = self.supervised
        return child.process if child is not None else None

    @property
    def executor(self) -> asyncio.subprocess.Process | None:
        child = self.children.get(EXECUTOR)
        return child.process if child is not None else None

    async def start(self) -> None:
        for child in self.children.values():
            await child.start()

    async def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            await child.stop()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

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
        supernode = self.supervised
        if supernode is not None:
            out.update(supernode.status())
        others = {n: c.status() for n, c in self.children.items() if n != SUPERNODE}
        if others:
            out["children"] = others
        if self.settings.mode == "run":
            executor = self.children.get(EXECUTOR)
            out["executor_running"] = executor is not None and executor.running
            out["runs"] = recent_runs(self.runtime.runs_file if self.runtime else None)
        out["superlink_reachable"] = await self._superlink_reachable()
        return out

    async def check_ready(self) -> None:
        for name, child in self.children.items():
            if not child.running:
                code = "EXECUTOR_DOWN" if name == EXECUTOR else "SUPERNODE_DOWN"
                raise UnavailableError(f"the {name} process is not running", code=code)


__all__ = ["SuperNode"]
