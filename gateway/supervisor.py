"""Supervise a child process of the gateway: start, watch, restart with backoff, stop.

Why a supervisor rather than a bare ``Popen``: a SuperNode that exits (a bad
flag, a SuperLink that refused its key) must be seen, explained and retried,
and it must never outlive the gateway that started it. So each child

* runs in its own process group (stopped together with what it spawned) and
  gets the Linux parent-death signal (``PR_SET_PDEATHSIG``, SIGKILL) in a
  pre-exec hook, so even a gateway killed with SIGKILL takes it along;
* has its stdout and stderr read line by line into the gateway's JSON log
  (logger ``ehds.child``) and into a short tail shown by status;
* is restarted after it exits, with exponential backoff (reset once it has
  stayed up for ``stable_seconds``);
* is stopped by its process group: SIGTERM, then SIGKILL after the timeout.

Status never includes the command line (it may carry key paths). The class is
generic: the gateway's SuperNode and any helper process next to it (e.g. a
ClientApp executor) each get one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import orjson

LOG = logging.getLogger("ehds.child")
PR_SET_PDEATHSIG = 1
TAIL_LINES = 20
MAX_LINE = 400

State = Literal["idle", "running", "backoff", "stopping", "stopped"]


def _parent_death_hook(parent: int) -> Callable[[], None]:
    """Pre-exec: die with the parent (Linux); refuse to start if it is already gone."""

    def hook() -> None:
        with contextlib.suppress(OSError, AttributeError):  # not Linux: the group still applies
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return hook


class Supervised:
    """One supervised child command (see module docstring)."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stop_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        stable_seconds: float = 30.0,
        restart: bool = True,
    ) -> None:
        if not command:
            raise ValueError("a supervised child needs a command")
        self.name = name
        self.command = tuple(command)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_seconds = stable_seconds
        self.restart = restart
        self.state: State = "idle"
        self.process: asyncio.subprocess.Process | None = None
        self.started_at: float | None = None
        self.starts = 0
        self.last_exit_code: int | None = None
        self.last_error: str | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._backoff = backoff_initial

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the child and keep it running until :meth:`stop`."""
        if self._task is not None:
            return
        self._stopping.clear()
        await self._spawn()
        self._task = asyncio.create_task(self._watch(), name=f"supervise-{self.name}")

    async def _spawn(self) -> None:
        self.starts += 1
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_parent_death_hook(os.getpid()),
            )
        except OSError as exc:  # command not found, not executable
            self.process = None
            self.last_error = type(exc).__name__
            self.tail.append(f"cannot start: {type(exc).__name__}: {exc.strerror or exc}")
            self._event("child.start_failed", error=type(exc).__name__)
            return
        self.last_error = None
        self.started_at = time.monotonic()
        self.state = "running"
        self._event("child.started", pid=self.process.pid, start=self.starts)

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()[:MAX_LINE]
            if line:
                self.tail.append(line)
                self._event("child.output", line=line)

    async def _watch(self) -> None:
        while True:
            proc = self.process
            if proc is not None:
                await asyncio.gather(self._pump(proc), proc.wait())
                self.last_exit_code = proc.returncode
                ran = time.monotonic() - (self.started_at or time.monotonic())
                self._event("child.exited", pid=proc.pid, exit_code=proc.returncode)
                with contextlib.suppress(ProcessLookupError):  # stragglers in its group
                    os.killpg(proc.pid, signal.SIGKILL)
                if ran >= self.stable_seconds:
                    self._backoff = self.backoff_initial
            if self._stopping.is_set():
                self.state = "stopped"
                return
            if not self.restart:
                self.state = "stopped"
                return
            self.state = "backoff"
            delay = self._backoff
            self._backoff = min(self.backoff_max, self._backoff * 2)
            self._event("child.restart_scheduled", delay_seconds=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                self.state = "stopped"
                return
            await self._spawn()

    async def stop(self) -> None:
        """SIGTERM to the child's process group, SIGKILL after ``stop_timeout``."""
        self._stopping.set()
        proc = self.process
        if proc is not None and proc.returncode is None:
            self.state = "stopping"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=self.stop_timeout)
            except TimeoutError:
                task.cancel()
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self.state != "idle":
            self.state = "stopped"

    # -- reporting ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def status(self) -> dict[str, Any]:
        """What an operator needs to know; never the command line."""
        proc = self.process
        running = self.running
        return {
            "state": "running" if running and self.state == "running" else self.state,
            "running": running,
            "pid": proc.pid if proc is not None and running else None,
            "starts": self.starts,
            "restarts": max(0, self.starts - 1),
            "exit_code": self.last_exit_code,
            "uptime_seconds": (
                round(time.monotonic() - self.started_at, 1)
                if running and self.started_at is not None
                else None
            ),
            "last_error": self.last_error,
            "last_lines": list(self.tail),
        }

    def _event(self, event: str, **fields: Any) -> None:
        LOG.info(orjson.dumps({"event": event, "child": self.name, **fields}).decode())


__all__ = ["Supervised"]
