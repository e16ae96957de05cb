"""The console as operators run it: ``ehds hdab staff add`` then ``ehds hdab serve`` (a real process)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.gateway.test_serve import ROOT, free_port

PASSWORD = "served console password"


@pytest.mark.slow
def test_staff_added_by_the_cli_signs_in_to_the_served_console(tmp_path: Path) -> None:
    env = {**os.environ, "EHDS_SERVER_SHUTDOWN_TIMEOUT": "2"}
    add = subprocess.run(
        [sys.executable, "-m", "gateway", "hdab", "staff", "add", "officer-1", "--role",
         "reviewer", "--password-stdin", "--data-dir", str(tmp_path)],
        input=PASSWORD + "\n", cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "hdab", "serve", "--port", str(port),
         "--data-dir", str(tmp_path), "--json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["console"] == f"http://127.0.0.1:{port}/console/"
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(info["console"] + "login", timeout=10).read().decode()
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match
        form = urllib.parse.urlencode(
            {"csrf": match.group(1), "staff_id": "officer-1", "password": PASSWORD}
        ).encode()
        dashboard = opener.open(info["console"] + "login", data=form, timeout=30)
        text = dashboard.read().decode()
        assert dashboard.url.endswith("/console/") and "officer-1 · reviewer" in text
        register = json.loads(opener.open(info["console"] + "register.json", timeout=10).read())
        assert register["hdab"] == "hdab-demo" and register["permits"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
