"""Three organisations from the documented commands: HDAB, hospitals, researcher.

The HDAB service on PostgreSQL; a SuperLink with TLS and SuperNode
authentication (the compose command line); three hospital gateways set up with
``ehds node init``, each supervising its own SuperNode; a researcher's job
written by ``ehds job create`` and submitted with ``flwr run`` and the example
Flower app. Then the permit is revoked (the hospitals refresh their status
lists as the timer does) and the same job runs again: Flower records the run
as failed and the model card says why. Finally one gateway is killed with
SIGKILL: its SuperNode goes with it, and the restarted gateway starts a fresh one.

Every step is a subprocess running the command as an operator would type it.
Slow: a deployment round costs a SuperNode poll and a ClientApp process start
per site, and this test runs two jobs and starts eight services; on a loaded
2-core machine it takes several minutes, over the CI budget for one test. So it
runs only with ``EHDS_E2E_OPERATIONS=1``; the pieces run in CI on their own
(test_supervisor, test_packaging, test_docs_commands, test_remote_cli,
tests/federation/test_outcome.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.test_packaging import (
    BIN,
    compose,
    free_port,
    get_json,
    replace_arg,
    running,
    wait_port,
)
from tests.gateway.test_supervisor import alive, wait_until

ROOT = Path(__file__).resolve().parents[2]
SITES = ("hospital-a", "hospital-b", "hospital-c")


def sh(env: dict[str, str], cwd: Path, *argv: str, timeout: float = 300) -> str:
    exe = str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0]
    done = subprocess.run(
        [exe, *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(argv)} -> {done.returncode}\n{done.stderr[-3000:]}"
    return done.stdout


def ehds_json(env: dict[str, str], cwd: Path, *argv: str) -> Any:
    return json.loads(sh(env, cwd, "ehds", *argv, "--json"))


def run_job(env: dict[str, str], cwd: Path, job: Path, out: Path) -> dict[str, Any]:
    (out / "result.json").unlink(missing_ok=True)
    app = ROOT / "docs" / "examples" / "flower-app"
    sh(
        env,
        cwd,
        "flwr",
        "run",
        str(app),
        "ehds",
        "--run-config",
        f'job-file="{job}"',
        "--stream",
        timeout=900,
    )
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


def flower_runs(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    text = sh(env, cwd, "flwr", "ls", "ehds", "--format", "json")
    runs: list[dict[str, Any]] = json.loads(text[text.index("{") :])["runs"]
    return runs


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(1200)
@pytest.mark.skipif(
    not os.environ.get("EHDS_E2E_OPERATIONS"), reason="several minutes: set EHDS_E2E_OPERATIONS=1"
)
def test_three_organisations_train_then_a_revoked_permit_fails_the_run(
    tmp_path: Path, pg_schema_url: str
) -> None:
    from federation.devca import make_dev_ca
    from fhir_adapters.testing.synthetic import CohortConfig, write_ndjson

    env = {k: v for k, v in os.environ.items() if not k.startswith(("EHDS_", "FLWR_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        FLWR_HOME=str(tmp_path / "flwr-home"),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        EHDS_SERVER_SHUTDOWN_TIMEOUT="3",
    )
    hdab_port, link_port = free_port(), free_port()
    hdab_url = f"http://127.0.0.1:{hdab_port}"
    cwd = tmp_path

    # --- the HDAB (docs/operators.md quick start; database from compose.yaml)
    for name in ("staff", "researcher", "analyst"):
        sh(
            env,
            cwd,
            "ehds",
            "keys",
            "generate",
            "--out",
            f"{name}.jwk",
            "--public-out",
            f"{name}.pub.jwk",
        )
    sh(
        env,
        cwd,
        "ehds",
        "hdab",
        "client",
        "add",
        "--data-dir",
        "hdab",
        "--key",
        "staff.pub.jwk",
        "--org",
        "hdab-fi",
        "--role",
        "hdab_staff",
    )
    sh(
        env,
        cwd,
        "ehds",
        "hdab",
        "client",
        "add",
        "--data-dir",
        "hdab",
        "--key",
        "researcher.pub.jwk",
        "--org",
        "org-research-1",
        "--role",
        "data_user",
    )
    hdab_env = {
        **env,
        "EHDS_HDAB_ID": "hdab-fi",
        "EHDS_HDAB_COUNTRY": "FI",
        "EHDS_HDAB_DATABASE": pg_schema_url,
        "EHDS_AUDIT_DATABASE": pg_schema_url,
    }
    hdab_argv = [
        str(BIN / "ehds"),
        "hdab",
        "serve",
        "--data-dir",
        str(cwd / "hdab"),
        "--port",
        str(hdab_port),
    ]

    certs = cwd / "certs"
    make_dev_ca(certs, hosts=("localhost", "127.0.0.1"))
    link_argv = [
        a.replace("/etc/ehds/certs", str(certs))
        for a in compose()["services"]["superlink"]["command"]
    ]
    link_argv = replace_arg(link_argv, "--port", str(link_port))
    link_argv = replace_arg(link_argv, "--host", "127.0.0.1")
    link_argv = replace_arg(link_argv, "--database", str(cwd / "superlink.db"))
    link_argv[0] = str(BIN / link_argv[0])
    (cwd / "flwr-home").mkdir()
    (cwd / "flwr-home" / "config.toml").write_text(
        f'[superlink]\ndefault = "ehds"\n\n[superlink.ehds]\naddress = "127.0.0.1:{link_port}"\n'
        f'root-certificates = "{certs / "ca.crt"}"\n'
    )

    with (
        running(hdab_argv, hdab_env, cwd / "hdab.log") as hdab_proc,
        running(link_argv, env, cwd / "superlink.log") as link_proc,
    ):
        get_json(f"{hdab_url}/ready", hdab_proc, cwd / "hdab.log")
        wait_port(link_port, link_proc, cwd / "superlink.log")
        api = {**env, "EHDS_HDAB_URL": hdab_url}

        # --- the researcher applies; the HDAB approves and issues
        application = (ROOT / "docs" / "examples" / "application.json").read_text()
        for marker, key in (("HOLDER_KID", "researcher.jwk"), ("PERSON_KID", "analyst.jwk")):
            application = application.replace(
                marker, ehds_json(env, cwd, "keys", "show", key)["kid"]
            )
        (cwd / "application.json").write_text(application)
        app_id = ehds_json(
            api, cwd, "hdab", "application", "apply", "application.json", "--key", "researcher.jwk"
        )["id"]
        ehds_json(api, cwd, "hdab", "application", "approve", app_id, "--key", "staff.jwk")
        jti = ehds_json(
            api, cwd, "hdab", "permit", "issue", app_id, "--key", "staff.jwk", "--out", "permit.jws"
        )["jti"]

        # --- three hospitals: node init, SuperNode key registered, gateway started
        data = write_ndjson(CohortConfig(n_patients=450, n_sites=3, seed=5), cwd / "fhir")
        gateways: dict[str, Any] = {}
        stack: list[Any] = []
        try:
            for site, folder in zip(SITES, data, strict=True):
                port = free_port()
                ehds_json(
                    env,
                    cwd,
                    "node",
                    "init",
                    "--site",
                    site,
                    "--dir",
                    site,
                    "--fhir",
                    str(folder),
                    "--superlink",
                    f"127.0.0.1:{link_port}",
                    "--root-certificates",
                    str(certs / "ca.crt"),
                    "--hdab-url",
                    hdab_url,
                    "--hdab-country",
                    "FI",
                    "--port",
                    str(port),
                )
                sh(
                    env,
                    cwd,
                    "flwr",
                    "supernode",
                    "register",
                    f"{site}/keys/supernode.pub",
                    "ehds",
                    "--name",
                    site,
                    "--format",
                    "json",
                )
                ctx = running(
                    [str(BIN / "ehds"), "node", "serve", "--config", f"{cwd / site}/node.toml"],
                    env,
                    cwd / f"{site}.log",
                )
                proc = ctx.__enter__()
                stack.append(ctx)
                get_json(f"http://127.0.0.1:{port}/health", proc, cwd / f"{site}.log")
                gateways[site] = (proc, port)

            # --- the researcher's job, run with flwr run
            ehds_json(
                env,
                cwd,
                "job",
                "create",
                "--permit",
                "permit.jws",
                "--spec",
                str(ROOT / "docs" / "examples" / "synthetic.spec.json"),
                "--sites",
                ",".join(SITES),
                "--key",
                "analyst.jwk",
                "--out",
                "job.json",
                "--output-dir",
                "model",
                "--rounds",
                "1",
                "--round-timeout",
                "240",
            )
            first = run_job(env, cwd, cwd / "job.json", cwd / "model")
            assert first["status"] == "completed", first
            assert sorted(first["contributing_sites"]) == list(SITES)

            # --- revoke; each site refreshes its status list (the systemd timer's command)
            ehds_json(
                api,
                cwd,
                "hdab",
                "permit",
                "revoke",
                jti,
                "--reason",
                "breach_of_conditions",
                "--key",
                "staff.jwk",
            )
            for site in SITES:
                sh(
                    api,
                    cwd,
                    "ehds",
                    "hdab",
                    "permit",
                    "status-list",
                    "--out",
                    f"{site}/status-list.jws",
                )
            second = run_job(env, cwd, cwd / "job.json", cwd / "model")
            assert second["status"] == "failed"
            card = json.loads((cwd / "model" / "model_card.json").read_text())
            assert card["status"] == "failed" and card["error_code"] == second["error_code"]
            assert set(card["sites_failed"].values()) == {"permit_revoked"}
            statuses = [r.get("status") for r in flower_runs(env, cwd)]
            assert statuses.count("finished:failed") == 1 and "finished:completed" in statuses

            # --- SIGKILL one gateway: its SuperNode goes; a restart starts a fresh one
            proc, port = gateways["hospital-a"]
            flower = ehds_json(
                {**env, "EHDS_NODE_URL": f"http://127.0.0.1:{port}"},
                cwd,
                "node",
                "flower",
                "--key",
                "hospital-a/keys/operator.jwk",
            )
            old = flower["pid"]
            assert flower["state"] == "running" and alive(old)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert wait_until(lambda: not alive(old), timeout=3 + 5)
            ctx = running(
                [str(BIN / "ehds"), "node", "serve", "--config", f"{cwd}/hospital-a/node.toml"],
                env,
                cwd / "hospital-a-2.log",
            )
            proc = ctx.__enter__()
            stack.append(ctx)
            get_json(f"http://127.0.0.1:{port}/health", proc, cwd / "hospital-a-2.log")
            flower = ehds_json(
                {**env, "EHDS_NODE_URL": f"http://127.0.0.1:{port}"},
                cwd,
                "node",
                "flower",
                "--key",
                "hospital-a/keys/operator.jwk",
            )
            assert flower["pid"] != old and alive(flower["pid"])
        finally:
            for ctx in reversed(stack):
                ctx.__exit__(None, None, None)
    assert sys.executable  # processes above are all stopped by their process groups
    time.sleep(0)
