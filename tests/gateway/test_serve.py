"""The real commands: ``ehds hdab serve`` / ``ehds node serve`` start, answer, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.gateway.conftest import Api, Keys, make_config, start

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("service", ["hdab", "node"])
def test_serve_starts_answers_and_stops_gracefully(tmp_path: Path, service: str) -> None:
    port = free_port()
    env = {**os.environ, "EHDS_SERVER_SHUTDOWN_TIMEOUT": "2"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            service,
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
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server is listening
        info = json.loads(line)
        assert info["url"] == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(info["url"] + "/health", timeout=10) as resp:
            assert json.loads(resp.read())["service"] == service
        with urllib.request.urlopen(info["openapi"], timeout=10) as resp:
            assert json.loads(resp.read())["openapi"] == "3.1.0"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 30
        assert proc.stderr is not None
        events = [
            json.loads(x).get("event") for x in proc.stderr.read().splitlines() if x.startswith("{")
        ]
        assert "server.stopping" in events and "server.stopped" in events
        assert (tmp_path / "keys" / f"{service}.jwk").exists()
        assert oct((tmp_path / "keys" / f"{service}.jwk").stat().st_mode & 0o777) == "0o600"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_configuration_is_one_line_and_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nprot = 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "node", "serve", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "ehds: error: [CONFIG_INVALID] unknown setting(s) in [server]: prot"
    ]


async def test_status_list_is_republished_on_a_timer(tmp_path: Path, keys: Keys) -> None:
    from gateway.hdab_service import create_hdab_app

    config = make_config(
        tmp_path,
        "hdab",
        EHDS_HDAB_DATABASE=f"sqlite:///{tmp_path}/hdab.sqlite",
        EHDS_HDAB_STATUS_LIST_REFRESH_SECONDS="1",
    )
    client = await start(create_hdab_app(config, keys=keys.ring()))
    try:
        api = Api(client, "hdab-test")

        async def version() -> int:
            import base64

            token = (await (await api.call("GET", "/status-list")).json())["token"]
            part = token.split(".")[1]
            return int(
                json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))["version"]
            )

        first = await version()
        for _ in range(50):
            await asyncio.sleep(0.2)
            if await version() > first:
                break
        assert await version() > first
    finally:
        await client.close()


async def test_in_flight_request_completes_during_shutdown(tmp_path: Path, keys: Keys) -> None:
    import aiohttp

    from fhir_adapters.testing.synthetic import CohortConfig, synthetic_spec_document, write_ndjson
    from gateway.http.auth import sign_request
    from gateway.http.server import serve
    from gateway.node_service import create_node_app
    from tests.gateway.conftest import node_config

    (site,) = write_ndjson(CohortConfig(n_patients=300, n_sites=1, seed=3), tmp_path / "site")
    app = create_node_app(node_config(tmp_path, site), keys=keys.ring())
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve(
            app,
            host="127.0.0.1",
            port=0,
            shutdown_timeout=30,
            on_ready=lambda h, p: ready.set_result(p),
            stop=stop,
        )
    )
    port = await asyncio.wait_for(ready, 60)
    body = json.dumps({"spec": synthetic_spec_document()}).encode()
    header = sign_request(
        keys.operator, method="POST", path="/features/dry-run", body=body, audience="site-a"
    )
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(
            session.post(
                f"http://127.0.0.1:{port}/features/dry-run",
                data=body,
                headers={"Authorization": header, "Content-Type": "application/json"},
            )
        )
        await asyncio.sleep(0.3)  # the dry run is under way
        stop.set()  # what SIGTERM does
        resp = await request
        assert resp.status == 200
        assert (await resp.json())["patients"] > 0
    await asyncio.wait_for(server, 60)


def test_client_commands_manage_the_file_serve_reads(tmp_path: Path) -> None:
    from gateway.cli import main
    from gateway.client_keys import KeyRing
    from gateway.config import load_config
    from trust import generate_jwk as generate_key
    from trust import thumbprint

    key = generate_key()
    public = tmp_path / "alice.pub.jwk"
    public.write_text(key.export_public())
    private = tmp_path / "alice.jwk"
    private.write_text(key.export_private())
    base = ["hdab", "client"]
    common = ["--data-dir", str(tmp_path)]
    assert (
        main(
            [
                *base,
                "add",
                *common,
                "--key",
                str(public),
                "--org",
                "hdab-fi",
                "--role",
                "hdab_staff",
            ]
        )
        == 0
    )
    config = load_config(service="hdab", env={"EHDS_DATA_DIR": str(tmp_path)})
    assert config.clients_file == tmp_path / "hdab-clients.jwks.json"
    ring = KeyRing.from_file(config.clients_file)
    assert ring.get(thumbprint(key)) is not None
    # a private key is refused and the file is left as it was
    assert (
        main([*base, "add", *common, "--key", str(private), "--org", "x", "--role", "data_user"])
        == 2
    )
    assert len(KeyRing.from_file(config.clients_file)) == 1
    assert main([*base, "remove", *common, "--kid", thumbprint(key)]) == 0
    assert len(KeyRing.from_file(config.clients_file)) == 0
    assert main([*base, "remove", *common, "--kid", thumbprint(key)]) == 2
