"""The Flower SuperNode next to a hospital gateway: run it as a child, or report on one.

``mode = "run"`` starts the configured command (e.g. ``flower-supernode
--superlink 10.0.0.5:9092 ...``) when the gateway starts and stops it on
shutdown: SIGTERM, then SIGKILL after the shutdown timeout, by its own PID.
``mode = "connect"`` only reports whether the SuperLink's port answers.
Status never includes the command line (it may carry key paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from gateway.config import FlowerSettings
from gateway.errors import UnavailableError


class SuperNode:
    def __init__(self, settings: FlowerSettings, *, stop_timeout: float = 10.0) -> None:
        self.settings = settings
        self.stop_timeout = stop_timeout
        self.process: asyncio.subprocess.Process | None = None
        self.started_at: float | None = None

    async def start(self) -> None:
        if self.settings.mode != "run":
            return
        self.process = await asyncio.create_subprocess_exec(
            *self.settings.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self.started_at = time.time()

    async def stop(self) -> None:
        proc = self.process
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
        out["superlink_reachable"] = await self._superlink_reachable()
        return out

    async def check_ready(self) -> None:
        if self.settings.mode == "run" and (
            self.process is None or self.process.returncode is not None
        ):
            raise UnavailableError("the SuperNode process is not running", code="SUPERNODE_DOWN")


__all__ = ["SuperNode"]
