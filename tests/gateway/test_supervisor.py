"""The supervised SuperNode: started after bind, restarted, reported truthfully, never orphaned.

The child here is a small Python script standing in for ``flower-supernode``
(the real one runs in tests/gateway/test_operations_e2e.py); what is under
test is the supervision, which is the same for any command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import FlowerSettings
from gateway.http.server import serve
from gateway.node_service import create_node_app
from gateway.supernode import SuperNode
from gateway.supervisor import Supervised
from tests.gateway.conftest import Keys, node_config
from tests.gateway.test_serve import free_port

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = "import os,sys,time; open(sys.argv[1],'a').write(f'{os.getpid()}\\n'); time.sleep(600)"


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


async def async_wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


async def test_a_dying_child_is_logged_restarted_with_backoff_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    child = Supervised(
        "supernode",
        [sys.executable, "-c", "import sys; print('bad flag --x', flush=True); sys.exit(2)"],
        backoff_initial=0.05,
        backoff_max=0.2,
        stop_timeout=5,
    )
    caplog.set_level("INFO", logger="ehds.child")
    await child.start()
    try:
        assert await async_wait_until(lambda: child.starts >= 3 and child.state == "backoff")
    finally:
        await child.stop()
    status = child.status()
    assert status["running"] is False and status["pid"] is None
    assert status["exit_code"] == 2
    assert status["uptime_seconds"] is None
    assert "bad flag --x" in status["last_lines"]
    assert status["restarts"] >= 2
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ehds.child"]
    assert {"event": "child.output", "child": "supernode", "line": "bad flag --x"} in events
    assert any(e["event"] == "child.exited" and e["exit_code"] == 2 for e in events)


async def test_a_missing_command_is_reported_not_raised() -> None:
    child = Supervised("supernode", ["/nonexistent/flower-supernode"], backoff_initial=5)
    await child.start()
    try:
        status = child.status()
        assert status["running"] is False
        assert status["last_error"] == "FileNotFoundError"
        assert status["last_lines"][-1].startswith("cannot start: FileNotFoundError")
    finally:
        await child.stop()


async def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    record = tmp_path / "pids"
    script = (
        "import subprocess,sys,time;"
        f"subprocess.Popen([sys.executable,'-c',{SLEEPER!r},sys.argv[1]]);"
        f"exec({SLEEPER!r})"
    )
    child = Supervised("supernode", [sys.executable, "-c", script, str(record)], stop_timeout=5)
    await child.start()
    assert await async_wait_until(lambda: len(pids(record)) == 2)
    await child.stop()
    assert await async_wait_until(lambda: not any(alive(p) for p in pids(record)), timeout=10)


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[int]:
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            app,
            host="127.0.0.1",
            port=0,
            shutdown_timeout=2,
            stop=stop,
            on_ready=lambda h, p: bound.set_result(p),
        )
    )
    try:
        yield await asyncio.wait_for(bound, 30)
    finally:
        stop.set()
        await task


async def test_status_tells_the_truth_about_a_dead_supernode(
    tmp_path: Path, keys: Keys, site_data: Path
) -> None:
    settings = FlowerSettings(
        mode="run",
        command=(
            sys.executable,
            "-c",
            "import sys; print('unknown flag', flush=True); sys.exit(2)",
        ),
    )
    supernode = SuperNode(settings, stop_timeout=5, backoff_initial=30)
    app = create_node_app(node_config(tmp_path, site_data), keys=keys.ring(), supernode=supernode)
    assert supernode.supervised is not None and supernode.supervised.starts == 0
    async with served(app):
        child = supernode.supervised
        assert child.starts == 1  # started once the port was bound
        assert await async_wait_until(lambda: child.state == "backoff")
        status = await supernode.status()
        assert status["state"] == "backoff" and status["running"] is False
        assert status["exit_code"] == 2 and status["uptime_seconds"] is None
        assert status["last_lines"] == ["unknown flag"]
        assert "command" not in status
        try:
            await supernode.check_ready()
        except Exception as exc:
            assert getattr(exc, "code", None) == "SUPERNODE_DOWN"
        else:
            pytest.fail("a dead SuperNode must make the gateway not ready")


def gateway(tmp_path: Path, site_data: Path, record: Path, port: int) -> subprocess.Popen[str]:
    script = tmp_path / "fake_supernode.py"
    script.write_text(SLEEPER)
    env = {
        **os.environ,
        "EHDS_SERVER_SHUTDOWN_TIMEOUT": "2",
        "EHDS_NODE_FHIR_PATH": str(site_data),
        "EHDS_NODE_FLOWER_MODE": "run",
        "EHDS_NODE_FLOWER_COMMAND": f"{sys.executable},{script},{record}",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "node",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--json",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_killed_gateway_takes_its_supernode_along_and_a_restart_starts_a_fresh_one(
    tmp_path: Path, site_data: Path
) -> None:
    record = tmp_path / "supernode.pids"
    port = free_port()
    first = gateway(tmp_path, site_data, record, port)
    second: subprocess.Popen[str] | None = None
    try:
        assert first.stdout is not None
        json.loads(first.stdout.readline())  # listening
        assert wait_until(lambda: len(pids(record)) == 1)
        (old,) = pids(record)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert wait_until(lambda: not alive(old), timeout=2 + 5)
        second = gateway(tmp_path, site_data, record, port)
        assert second.stdout is not None
        json.loads(second.stdout.readline())
        assert wait_until(lambda: len(pids(record)) == 2)
        new = pids(record)[1]
        assert new != old and alive(new)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        assert not alive(new)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid in pids(record):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_port_in_use_is_its_own_error_and_starts_no_supernode(
    tmp_path: Path, site_data: Path
) -> None:
    record = tmp_path / "supernode.pids"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = gateway(tmp_path, site_data, record, port)
        try:
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 2
    records = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert records[-1] == {  # under --json the error is JSON too
        "error": {
            "code": "PORT_IN_USE",
            "message": f"cannot listen on 127.0.0.1:{port}: the address is already in use "
            "(another service, or an earlier instance still running)",
        }
    }
    events = [r.get("event") for r in records]
    assert "child.started" not in events  # never started, so nothing can be left behind
    assert pids(record) == []
