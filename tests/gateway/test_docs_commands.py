"""Every ``sh`` block of docs/operators.md and docs/deployment.md runs as written.

A small runner: blocks run in order, one ``bash -euo pipefail`` each, in one
folder per document (with ``docs/`` linked in, so ``docs/examples/...`` paths
work as they do from the repository root), the project's ``ehds`` first on
PATH, and variables carried from one block to the next (as in one shell). An HTML
comment on the line before a block changes how it is run:

* ``<!-- doc-test: skip (why) -->``: not run (a reason is required);
* ``<!-- doc-test: background URL -->``: a long-running service, started in its
  own process group, waited for until URL answers, stopped at the end.

Ports: the documents write ``${HDAB_PORT:-8700}`` and ``${NODE_PORT:-8710}``;
the runner sets free ones so nothing here binds a fixed port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gateway.test_serve import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("operators.md", "deployment.md")
MARK = re.compile(r"<!--\s*doc-test:\s*(skip|background)\s*(.*?)\s*-->")


@dataclass
class Block:
    line: int
    code: str
    mode: str  # "run", "skip" or "background"
    arg: str


def blocks(text: str) -> list[Block]:
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start = i
            body: list[str] = []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            m = MARK.search(prev)
            mode, arg = (m.group(1), m.group(2)) if m else ("run", "")
            out.append(Block(start + 1, "\n".join(body), mode, arg))
        i += 1
    return out


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"background block exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_the_runner_understands_the_markers() -> None:
    text = "a\n<!-- doc-test: skip (needs a host) -->\n```sh\nfalse\n```\n```sh\ntrue\n```\n"
    found = blocks(text)
    assert [(b.mode, b.arg, b.code) for b in found] == [
        ("skip", "(needs a host)", "false"),
        ("run", "", "true"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS)
def test_every_command_block_runs_as_written(doc: str, tmp_path: Path) -> None:
    found = blocks((ROOT / "docs" / doc).read_text())
    assert found, f"{doc} has no sh blocks"
    for b in found:
        if b.mode == "skip":
            assert b.arg.startswith("(") and len(b.arg) > 4, f"{doc}:{b.line}: skip needs a reason"
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EHDS_", "FLWR_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HDAB_PORT=str(free_port()),
        NODE_PORT=str(free_port()),
        FLWR_HOME=str(tmp_path / "flwr-home"),
        EHDS_SERVER_SHUTDOWN_TIMEOUT="2",
        EHDS_SERVER_ACCESS_LOG="false",
    )
    state = tmp_path / ".doc-env.sh"
    state.write_text("")
    background: list[subprocess.Popen[bytes]] = []
    try:
        for b in found:
            if b.mode == "skip":
                continue
            # set -a: variables a block assigns are there for the next, as in one shell
            script = f"set -euo pipefail -a\nsource {state}\n{b.code}\n"
            if b.mode == "background":
                log = (tmp_path / f"background-{b.line}.log").open("wb")
                proc = subprocess.Popen(
                    ["bash", "-c", f"{script}"],
                    cwd=tmp_path,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                background.append(proc)
                url = subprocess.run(
                    ["bash", "-c", f'echo "{b.arg}"'], env=env, capture_output=True, text=True
                ).stdout.strip()
                wait_for(url, proc)
                continue
            done = subprocess.run(
                ["bash", "-c", script + f"export -p > {state}\n"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, (
                f"{doc}:{b.line} failed ({done.returncode}):\n{b.code}\n--- stderr\n"
                f"{done.stderr[-3000:]}\n--- stdout\n{done.stdout[-1000:]}"
            )
    finally:
        for proc in background:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in background:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert shutil.which("bash")
