"""``ehds node init`` and ``ehds job create``: files that the real parts accept as written."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from federation.adapters import spec_hash_of
from federation.job import SiteConfig, TrainingJob
from federation.testing.devpermit import DevPermitWorld, build_permit_world
from gateway.cli import main
from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "examples" / "synthetic.spec.json"


@pytest.fixture
def permit_world(tmp_path: Path) -> DevPermitWorld:
    spec = json.loads(SPEC.read_text())
    return build_permit_world(
        tmp_path / "hdab", holders=("hospital-a", "hospital-b"), spec_hash=spec_hash_of(spec)
    )


def jwks_of(world: DevPermitWorld, out: Path) -> Path:
    """The HDAB's published JWKS (what GET /.well-known/jwks.json returns)."""
    trust_list = json.loads(world.trust_list.read_text())
    out.write_text(json.dumps({"keys": [e["jwk"] for e in trust_list["keys"]]}))
    return out


def init(tmp_path: Path, world: DevPermitWorld, site_data: Path, *extra: str) -> dict[str, Any]:
    jwks = jwks_of(world, tmp_path / "jwks.json")
    argv = [
        "node",
        "init",
        "--site",
        "hospital-a",
        "--dir",
        str(tmp_path / "site"),
        "--fhir",
        str(site_data),
        "--superlink",
        "superlink.example.org:9092",
        "--hdab-jwks",
        str(jwks),
        "--hdab-id",
        "hdab-dev",
        "--hdab-country",
        "FI",
        "--status-list",
        str(world.status_list),
        "--json",
        *extra,
    ]
    return argv  # type: ignore[return-value]


def test_node_init_writes_what_each_part_accepts(
    tmp_path: Path,
    permit_world: DevPermitWorld,
    site_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(init(tmp_path, permit_world, site_data)) == 0  # type: ignore[arg-type]
    out = json.loads(capsys.readouterr().out)
    site_dir = tmp_path / "site"

    # the gateway's configuration loads as written, with the SuperNode under supervision
    config = load_config(out["config"], service="node", env={})
    assert config.node.site == "hospital-a" and config.node.flower.mode == "run"
    assert list(config.node.flower.command) == out["supernode_command"]
    assert config.audit_origin == "hospital-a:audit"
    # every flag of the SuperNode command exists in this Flower (the docs' old
    # --clientappio-api-address made flower-supernode exit 2)
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "flower-supernode"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    flags = [a for a in out["supernode_command"] if a.startswith("--")]
    assert flags and all(f in help_text for f in flags), flags

    # private keys are private
    for name in ("audit.jwk", "operator.jwk", "supernode.key"):
        assert oct((site_dir / "keys" / name).stat().st_mode & 0o777) == "0o600"

    # the site config builds: the permit guard reads the trust list and status list,
    # the audit sink signs with the gateway's own audit key (one key format)
    site = SiteConfig.from_file(out["site_config"])
    assert site.site_id == "hospital-a"
    sink = site.audit.build()
    sink.record(
        "access.denied", subject={"site": "hospital-a"}, details={"reason": "permit_revoked"}
    )
    guard = site.authorizer.build(audit=sink)
    assert guard is not None
    checkpoint = sink.checkpoint()
    assert checkpoint["origin"] == "hospital-a:audit" and checkpoint["size"] == 1
    sink.close()

    # the gateway opens the same log with the same key and sees the ClientApp's entry
    from gateway.audit_backend import open_audit

    components = open_audit(config)
    try:
        assert asyncio.run(components.view.tree_size()) == 1
    finally:
        components.close()

    # a second init refuses to overwrite keys
    assert main(init(tmp_path, permit_world, site_data)) == 2  # type: ignore[arg-type]
    assert "exists" in capsys.readouterr().err


def test_job_create_writes_a_job_the_server_app_reads(
    tmp_path: Path, permit_world: DevPermitWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    permit = tmp_path / "permit.jws"
    permit.write_text(permit_world.permit_token)
    argv = [
        "job",
        "create",
        "--permit",
        str(permit),
        "--spec",
        str(SPEC),
        "--sites",
        "hospital-a,hospital-b",
        "--key",
        str(permit_world.user_key),
        "--out",
        str(tmp_path / "job.json"),
        "--output-dir",
        str(tmp_path / "model"),
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    job = TrainingJob.from_file(out["job"])
    assert job.expected_sites == 2 and job.sites == ()
    assert job.spec_hash == out["spec_hash"]
    signer = job.request_signer.build()
    assert signer.jti == permit_world.permit_jti

    bad = [*argv[:7], "hospital-a,hospital-z", *argv[8:]]
    assert main(bad) == 2
    assert orjson.loads(capsys.readouterr().err)["error"]["code"] == "JOB_SITE_UNKNOWN"


def test_the_documented_examples_load() -> None:
    """docs/examples/node.toml and job.json are what the tools accept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHDS_")}
    config = load_config(ROOT / "docs" / "examples" / "node.toml", service="node", env=env)
    assert config.node.flower.mode == "run"
    assert "--clientappio-api-address" not in config.node.flower.command
    SiteConfig.from_file(ROOT / "docs" / "examples" / "site.json")
    TrainingJob.from_file(ROOT / "docs" / "examples" / "job.json")
