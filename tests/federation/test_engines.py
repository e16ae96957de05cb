"""The apps on Flower's real engines: Simulation (Ray) and Deployment (SuperLink/SuperNodes).

Slow by nature (process start-up, Ray, a 3 s SuperNode poll): marked ``slow``;
the deployment test is also ``e2e``. No timing is asserted.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from federation.deployment import DeploymentConfig, LocalDeployment
from federation.factory import FactoryRef
from federation.job import RoundReport
from federation.run import train
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
@pytest.mark.timeout(900)
def test_deployment_tls_node_auth_permit_bound_training(world: World, tmp_path: Path) -> None:
    job = world.job(rounds=1)
    config = DeploymentConfig(workdir=tmp_path / "deployment")
    deployment = LocalDeployment(config, job.sites)
    with deployment:
        pids = [p.popen.pid for p in deployment.procs]
        assert len(pids) == 4  # one SuperLink, three SuperNodes
        assert deployment.tls is not None and len(deployment.node_ids) == 3
        link, *nodes = deployment.procs
        assert {"--ssl-certfile", "--ssl-keyfile", "--enable-supernode-auth"} <= set(link.args)
        assert "--insecure" not in link.args
        for node in nodes:
            assert {"--root-certificates", "--auth-supernode-private-key"} <= set(node.args)
            assert "--insecure" not in node.args
        result = deployment.run(job)
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
        types = [e["type"] for e in world.events(site)]
        assert "access.allowed" in types and "training.round" in types


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
