"""The compose file and systemd units, started as plain processes.

No container engine or systemd runs on the CI machine, so this test reads each
service's command line and environment from packaging/compose.yaml and the
units, rewrites only what the container or the host would provide (ports,
host-side folders, the PostgreSQL address), and starts them: the HDAB on
PostgreSQL, a SuperLink with TLS and node authentication, and a hospital whose
gateway supervises its SuperNode.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gateway.test_serve import free_port

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
BIN = Path(sys.executable).parent


def compose() -> dict[str, Any]:
    return yaml.safe_load((PACKAGING / "compose.yaml").read_text())


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(PACKAGING / "systemd" / name)
    return parser


def replace_arg(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


def local(argv: list[str]) -> list[str]:
    """The image's PATH: our virtualenv's executables."""
    return [str(BIN / argv[0]), *argv[1:]]


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def get_json(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer:\n{log.read_text()[-3000:]}")


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.3)
    raise AssertionError(f"nothing on port {port}")


def test_compose_and_units_describe_every_service() -> None:
    services = compose()["services"]
    assert {"postgres", "hdab", "superlink", "hospital-a", "hospital-b", "hospital-c"} <= set(
        services
    )
    images = {s.get("image") for n, s in services.items() if n != "postgres"}
    assert images == {"ehds-gateway:latest"}  # one image, every service
    assert services["hdab"]["environment"]["EHDS_HDAB_DATABASE"].startswith("postgresql+psycopg")
    assert "--enable-supernode-auth" in services["superlink"]["command"]
    for name in ("ehds-hdab.service", "ehds-node@.service", "ehds-status-list@.service"):
        exec_start = unit(name)["Service"]["ExecStart"]
        assert shlex.split(exec_start)[0] == "/usr/local/bin/ehds"
    containerfile = (PACKAGING / "Containerfile").read_text()
    assert "requirements/lock.txt" in containerfile and "USER ehds" in containerfile


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_the_compose_services_start_as_plain_processes(tmp_path: Path, pg_schema_url: str) -> None:
    from federation.devca import make_dev_ca

    services = compose()["services"]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("EHDS_", "FLWR_"))}
    base_env.update(
        PATH=f"{BIN}{os.pathsep}{base_env.get('PATH', '')}",
        FLWR_HOME=str(tmp_path / "flwr"),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        EHDS_SERVER_SHUTDOWN_TIMEOUT="2",
    )
    hdab_port, link_port = free_port(), free_port()

    # HDAB on PostgreSQL: the compose command, the compose environment (database URL
    # pointed at this machine's PostgreSQL), host/port/data dir from the host side
    hdab = services["hdab"]
    argv = replace_arg(hdab["command"], "--port", str(hdab_port))
    argv = replace_arg(argv, "--host", "127.0.0.1")
    argv = replace_arg(argv, "--data-dir", str(tmp_path / "hdab"))
    env = {**base_env, **{k: str(v) for k, v in hdab["environment"].items()}}
    env["EHDS_HDAB_DATABASE"] = env["EHDS_AUDIT_DATABASE"] = pg_schema_url

    # SuperLink with TLS and node authentication: certificates where compose mounts them
    certs = tmp_path / "certs"
    make_dev_ca(certs, hosts=("localhost", "127.0.0.1"))
    link_argv = [a.replace("/etc/ehds/certs", str(certs)) for a in services["superlink"]["command"]]
    link_argv = replace_arg(link_argv, "--port", str(link_port))
    link_argv = replace_arg(link_argv, "--host", "127.0.0.1")
    link_argv = replace_arg(link_argv, "--database", str(tmp_path / "superlink.db"))

    hdab_log, link_log = tmp_path / "hdab.log", tmp_path / "superlink.log"
    with (
        running(local(argv), env, hdab_log) as hdab_proc,
        running(local(link_argv), base_env, link_log) as link_proc,
    ):
        ready = get_json(f"http://127.0.0.1:{hdab_port}/ready", hdab_proc, hdab_log)
        assert ready["checks"]["permit_store"] == "ok"
        wait_port(link_port, link_proc, link_log)

        # the status-list timer's command, with its EnvironmentFile's variable
        status = unit("ehds-status-list@.service")["Service"]["ExecStart"]
        status = status.replace("${EHDS_HDAB_URL}", f"http://127.0.0.1:{hdab_port}")
        status = status.replace("/etc/ehds/%i", str(tmp_path / "site-x"))
        (tmp_path / "site-x").mkdir()
        done = subprocess.run(
            [str(BIN / "ehds"), *shlex.split(status)[1:]],
            env=base_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "site-x" / "status-list.jws").read_text().count(".") == 2

        # a hospital, set up with `ehds node init` as compose.yaml says, started with the
        # compose command (its config path is where compose mounts the site folder)
        site = tmp_path / "sites" / "hospital-a"
        (tmp_path / "fhir").mkdir()
        init = subprocess.run(
            [
                str(BIN / "ehds"),
                "node",
                "init",
                "--site",
                "hospital-a",
                "--dir",
                str(site),
                "--fhir",
                str(tmp_path / "fhir"),
                "--superlink",
                f"127.0.0.1:{link_port}",
                "--root-certificates",
                str(certs / "ca.crt"),
                "--hdab-url",
                f"http://127.0.0.1:{hdab_port}",
                "--hdab-country",
                "FI",
                "--port",
                str(free_port()),
                "--json",
            ],
            env=base_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert init.returncode == 0, init.stderr
        node_argv = [
            a.replace("/etc/ehds/hospital-a", str(site)) for a in services["hospital-a"]["command"]
        ]
        node_argv = replace_arg(node_argv, "--host", "127.0.0.1")
        node_log = tmp_path / "hospital-a.log"
        port = int(
            dict(
                line.split(" = ")
                for line in (site / "node.toml").read_text().splitlines()
                if line.startswith("port = ")
            )["port"]
        )
        with running(local(node_argv), base_env, node_log) as node_proc:
            health = get_json(f"http://127.0.0.1:{port}/health", node_proc, node_log)
            assert health["org"] == "hospital-a"
            # the supervised SuperNode was started (after the bind) and its output is logged
            deadline = time.monotonic() + 60
            while "child.started" not in node_log.read_text() and time.monotonic() < deadline:
                time.sleep(0.3)
            assert '"child":"supernode"' in node_log.read_text()


@pytest.mark.slow
def test_the_hdab_unit_starts_as_a_plain_process(tmp_path: Path) -> None:
    service = unit("ehds-hdab.service")["Service"]
    config = tmp_path / "hdab.toml"
    port = free_port()
    config.write_text(f'data_dir = "{tmp_path}"\n[server]\nport = {port}\n')
    argv = [
        a.replace("/etc/ehds/hdab.toml", str(config)) for a in shlex.split(service["ExecStart"])
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHDS_")}
    env["EHDS_CONFIG"] = (
        service["Environment"].partition("=")[2].replace("/etc/ehds/hdab.toml", str(config))
    )
    log = tmp_path / "hdab.log"
    with running(local([Path(argv[0]).name, *argv[1:]]), env, log) as proc:
        assert get_json(f"http://127.0.0.1:{port}/health", proc, log)["service"] == "hdab"
    assert proc.returncode == 0  # SIGTERM (systemd's KillSignal) is a clean stop
    assert service["KillSignal"] == "SIGTERM"
