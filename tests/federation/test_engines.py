"""The apps on Flower's real engines: Simulation (Ray) and Deployment (SuperLink/SuperNodes).

Slow by nature (process start-up, Ray, a 3 s SuperNode poll): marked ``slow``;
the deployment test is also ``e2e``. No timing is asserted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from federation.deployment import DeploymentConfig, LocalDeployment
from federation.factory import FactoryRef
from federation.flower_app import released_manifest
from federation.job import RoundReport
from federation.run import train
from federation.site_runtime import recent_runs
from tests.federation.attack_apps import foreign_clientapp, shadowing_clientapp
from tests.federation.conftest import SITES, World


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_simulation_engine_completes_with_a_site_failing_mid_run(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray workers inherit the environment: the dying site raises instead of exiting,
    # which Flower's simulation reports as that node's error reply.
    monkeypatch.setenv("EHDS_TEST_INPROCESS", "1")
    marker = world.root / "kill-site-c"
    base = world.site("site-c")
    dying = FactoryRef(
        "tests.federation.helpers:dying_guard",
        {**base.authorizer.kwargs, "kill_marker": str(marker)},
    )
    job = world.job(
        sites=[world.site("site-a"), world.site("site-b"), world.site("site-c", authorizer=dying)],
        rounds=2,
    )
    seen: list[RoundReport] = []

    def progress(report: RoundReport) -> None:
        seen.append(report)
        marker.touch()  # site-c goes away after round 1

    result = train(job, engine="simulation", progress=progress)
    assert result.status == "completed", result.error_code
    assert [r.sites for r in seen] == [list(SITES), ["site-a", "site-b"]]
    assert "site-c" in result.failed_sites
    card = orjson.loads(Path(result.model_card).read_bytes())
    assert card["sites_failed"] == result.failed_sites
    failed = [e for e in world.events("coordinator") if e["type"] == "training.site_failed"]
    assert [e["subject"]["site"] for e in failed] == ["site-c"]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_deployment_tls_node_auth_runs_only_the_permitted_app(world: World, tmp_path: Path) -> None:
    """One deployment: the permitted job trains; two malicious apps are refused at every site.

    Sites run SuperNodes with ``--isolation process`` and their own executor
    (the gateway's installed ClientApp). The attacks are the issue's: an app
    naming another ClientApp module, and one shipping its own
    ``federation/client_app.py``. Their ServerApp writes what it received.
    """
    job = world.job(rounds=1)
    config = DeploymentConfig(workdir=tmp_path / "deployment")
    deployment = LocalDeployment(config, job.sites)
    released = released_manifest().digest
    with deployment:
        pids = [p.popen.pid for p in deployment.procs]
        assert len(pids) == 7  # one SuperLink; per site a SuperNode and its executor
        assert deployment.tls is not None and len(deployment.node_ids) == 3
        link = deployment.procs[0]
        assert {"--ssl-certfile", "--ssl-keyfile", "--enable-supernode-auth"} <= set(link.args)
        assert "--insecure" not in link.args
        for site in SITES:
            node = deployment.supernodes[site].args
            assert {"--root-certificates", "--auth-supernode-private-key"} <= set(node)
            assert node[node.index("--isolation") + 1] == "process"
            assert "--superexec-auth-secret-file" in node and "--insecure" not in node
            executor = deployment.executors[site].args
            assert "federation.site_executor" in executor and "--insecure" not in executor
        result = deployment.run(job)
        for name, build, reason in (
            ("foreign", foreign_clientapp, "app_reference_mismatch"),
            ("shadowing", shadowing_clientapp, "app_ships_code"),
        ):
            _assert_refused_everywhere(world, deployment, tmp_path / name, build, reason)
        runs = {s: recent_runs(deployment.runtimes[s].runs_file) for s in SITES}
    for pid in pids:  # everything we started is gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert result.status == "completed", result.error_code
    assert result.engine == "deployment"
    assert result.contributing_sites == list(SITES)
    card = orjson.loads(Path(result.model_card).read_bytes())
    assert card["permit"] == world.permit.permit_jti and card["rounds"] == 1
    assert set(result.metrics) == {"auc", "logloss", "accuracy"}
    for site in SITES:
        events = world.events(site)
        allowed = [e for e in events if e["type"] == "access.allowed"]
        assert allowed and all(e["details"]["app_digest"] == released for e in allowed)
        assert "training.round" in [e["type"] for e in events]
        # the site lists which app each Flower run used: the permitted one, then two refused
        assert len(runs[site]) == 3
        legit, *attacks = runs[site]
        assert legit["app_digest"] == released and legit["refused"] == 0
        assert all(r["refused"] == r["tasks"] == 1 for r in attacks)
        assert all(r["app_digest"] not in (None, released) for r in attacks)


def _assert_refused_everywhere(
    world: World,
    deployment: LocalDeployment,
    folder: Path,
    build: Callable[[Path, Path, Path], Path],
    reason: str,
) -> None:
    seen = {site: len(world.events(site)) for site in SITES}
    for site in SITES:
        (world.root / site / "data-read").unlink(missing_ok=True)
    out, marker = folder / "received.json", folder / "evil-code-ran"
    deployment.submit(build(folder / "app", out, marker))
    received = orjson.loads(out.read_bytes())
    assert received["sent"] == len(SITES)
    # the researcher's ServerApp receives one error code per site, and nothing else
    replies = [(r["flower_error"], r["records"]) for r in received["replies"]]
    expected = [(None, {"site": {"site-id": site, "error": reason}}) for site in SITES]
    assert sorted(replies, key=repr) == sorted(expected, key=repr)
    assert not marker.exists()  # the app's own ClientApp never ran anywhere
    for site in SITES:
        assert not (world.root / site / "data-read").exists()
        new = world.events(site)[seen[site] :]
        assert [e["type"] for e in new] == ["access.denied"]
        assert new[0]["details"]["reason"] == reason
        assert new[0]["details"]["app_digest"].startswith("sha256:")
        assert new[0]["subject"] == {"site": site, "job": "attack-job"}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_deployment_refuses_unregistered_supernode(world: World, tmp_path: Path) -> None:
    config = DeploymentConfig(workdir=tmp_path / "deployment")
    with LocalDeployment(config, [world.site("site-a")]) as deployment:
        from federation.devca import make_node_keys

        rogue = make_node_keys(tmp_path / "rogue", "rogue")
        assert deployment.tls is not None
        proc = deployment._spawn(
            "supernode-rogue",
            [
                deployment._bin("flower-supernode"),
                "--superlink",
                f"127.0.0.1:{deployment.port}",
                "--root-certificates",
                str(deployment.tls.ca_cert),
                "--auth-supernode-private-key",
                str(rogue.private_key),
                "--port",
                "0",
                "--max-retries",
                "0",
            ],
        )
        code = proc.popen.wait(timeout=240)
        assert code != 0  # the SuperLink does not admit a key nobody registered


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_deployment_supernode_killed_mid_run(world: World, tmp_path: Path) -> None:
    """SIGKILL one SuperNode's process group after round 1; rounds 2.. finish with the other two."""
    job = world.job(rounds=2, round_timeout=240.0)
    config = DeploymentConfig(workdir=tmp_path / "deployment")
    with LocalDeployment(config, job.sites) as deployment:

        def progress(report: RoundReport) -> None:
            if report.round == 1:
                deployment.kill_site("site-c")

        result = deployment.run(job, progress)
    assert result.status == "completed", result.error_code
    assert result.rounds[0].sites == list(SITES)
    assert result.rounds[1].sites == ["site-a", "site-b"]
    assert set(result.failed_sites) == {"site-c"}
    card = orjson.loads(Path(result.model_card).read_bytes())
    assert card["sites_failed"] == result.failed_sites
    failed = [e for e in world.events("coordinator") if e["type"] == "training.site_failed"]
    assert [e["subject"]["site"] for e in failed] == ["site-c"]
