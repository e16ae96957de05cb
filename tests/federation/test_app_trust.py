"""The site's checks of a run's app bundle, and the executor's replies, without Flower processes.

FABs here are built with Flower's own ``flwr build`` code (``build_fab_from_files``);
the executor's decision (:func:`federation.site_executor.answer`) runs with real
Flower messages from the coordinator (``InProcessGrid``), the real PermitGuard
and JSON-lines audit logs. The deployment e2e test runs the same over TLS.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import orjson
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.cli.build import build_fab_from_files
from flwr.clientapp import ClientApp

from federation.app_trust import AppTrustError, check_fab, manifest_from_files, read_fab
from federation.factory import FactoryRef
from federation.flower_app import app_files, released_app, released_manifest
from federation.server_app import run_coordinator
from federation.site_executor import answer
from federation.testing.inprocess import InProcessGrid
from tests.federation.attack_apps import foreign_clientapp, shadowing_clientapp
from tests.federation.conftest import SITES, World, WorldFactory

CODE = re.compile(r"^[a-z0-9_.:-]{1,64}$")
# flwr build's pathspec patterns warn on every FAB built; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _fab(files: Mapping[str, bytes]) -> bytes:
    return build_fab_from_files(dict(files))[0]


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _attack_fab(build: Callable[[Path, Path, Path], Path], tmp_path: Path) -> bytes:
    folder = build(tmp_path / "attack", tmp_path / "out.json", tmp_path / "marker")
    return _fab(_folder_files(folder))


# ---------------------------------------------------------------- pure FAB checks


def test_released_app_digest_is_stable_across_runs_and_job_files() -> None:
    one = read_fab(_fab(app_files("/jobs/a.json", rounds=1)))
    two = read_fab(_fab(app_files("/elsewhere/b.json", rounds=7)))
    assert one.digest == two.digest == released_manifest().digest
    assert released_app()["digest"] == one.digest
    check_fab(one)  # names the installed ClientApp, ships no code
    changed = dict(app_files())
    changed["README.md"] = b"something else\n"
    assert read_fab(_fab(changed)).digest != one.digest


@pytest.mark.parametrize(
    ("build", "reason"),
    [(foreign_clientapp, "app_reference_mismatch"), (shadowing_clientapp, "app_ships_code")],
)
def test_malicious_apps_are_refused(
    build: Callable[[Path, Path, Path], Path], reason: str, tmp_path: Path
) -> None:
    manifest = read_fab(_attack_fab(build, tmp_path))
    with pytest.raises(AppTrustError) as err:
        check_fab(manifest)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "name", ["lib/helper.so", "x.pth", "pkg/mod.pyc", "federation/client_app.py", "run.sh"]
)
def test_any_importable_or_unknown_file_counts_as_code(name: str) -> None:
    files = {**app_files(), name: b"payload"}
    with pytest.raises(AppTrustError) as err:
        check_fab(manifest_from_files(files))
    assert err.value.reason == "app_ships_code"


def _zip(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        b"not a zip",
        _zip({"README.md": b"no pyproject"}),
        _zip({"pyproject.toml": b"[project]\nname='x'\n"}),
        _zip({**app_files(), "../escape.md": b"x"}),
        _zip({**app_files(), "/abs.md": b"x"}),
    ],
)
def test_unreadable_bundles_are_refused_as_malformed(content: bytes) -> None:
    with pytest.raises(AppTrustError) as err:
        read_fab(content)
    assert err.value.reason == "app_malformed"


# ---------------------------------------------------------------- the executor's answers


def _executor_grid(
    world: World, fab: bytes, *, site_config: bool = True, **overrides: FactoryRef
) -> InProcessGrid:
    """The coordinator's grid where each node is a site's executor serving ``fab``'s run."""
    paths = {}
    for site in SITES:
        path = world.root / "sites" / f"{site}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(world.site(site, **overrides).to_dict()))
        paths[site] = str(path)

    def serve(msg: Message, context: Context) -> Message:
        index = context.node_config["partition-id"]
        assert isinstance(index, int)
        node_config = {"site-config": paths[SITES[index]]} if site_config else {}
        deployed = Context(
            run_id=7,
            node_id=context.node_id,
            node_config=node_config,
            state=RecordDict(),
            run_config={},
        )
        return answer(msg, deployed, fab).reply

    return InProcessGrid(cast(ClientApp, serve), len(SITES))


def _denials(world: World, site: str) -> list[dict[str, object]]:
    return [e for e in world.events(site) if e["type"] == "access.denied"]


def test_executor_serves_the_permitted_app_with_the_gateway_clientapp(world: World) -> None:
    grid = _executor_grid(world, _fab(app_files("/some/job.json")))
    result = run_coordinator(grid, world.job(rounds=1), engine="inprocess")
    assert result.status == "completed", result.error_code
    digest = released_manifest().digest
    for site in SITES:
        allowed = [e for e in world.events(site) if e["type"] == "access.allowed"]
        assert allowed and {e["details"]["app_digest"] for e in allowed} == {digest}


@pytest.mark.parametrize(
    ("permit", "reason"),
    [
        ({"pin_app": False}, "app_not_pinned"),
        ({"app": {**released_app(), "digest": "sha256:" + "e" * 64}}, "app_digest_mismatch"),
        ({"app": {**released_app(), "clientapp_version": "9.9.9"}}, "clientapp_version_mismatch"),
    ],
)
def test_executor_refuses_an_app_the_permit_does_not_name_before_reading_data(
    make_world: WorldFactory, permit: dict[str, object], reason: str
) -> None:
    world = make_world(**permit)
    grid = _executor_grid(world, _fab(app_files("/some/job.json")))
    result = run_coordinator(grid, world.job(rounds=1), engine="inprocess")
    assert result.status == "failed"
    assert set(result.failed_sites.values()) == {reason}
    for site in SITES:
        assert not (world.root / site / "data-read").exists()
        denied = _denials(world, site)
        assert denied and {e["details"]["reason"] for e in denied} == {reason}  # type: ignore[index]
        assert "access.allowed" not in [e["type"] for e in world.events(site)]


def test_no_reply_tells_the_coordinator_more_than_the_site_id(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    """Every kind of reply - trees and metrics, each refusal, a misconfigured site -
    carries only the site id, reason codes, trees and permitted metrics."""
    replies: list[Message] = []
    world = make_world()
    legit = _fab(app_files("/some/job.json"))
    for fab, kwargs in (
        (legit, {}),
        (_attack_fab(foreign_clientapp, tmp_path / "f"), {}),
        (_attack_fab(shadowing_clientapp, tmp_path / "s"), {}),
        (legit, {"site_config": False}),
    ):
        grid = _executor_grid(world, fab, **kwargs)
        run_coordinator(grid, world.job(rounds=1), engine="inprocess")
        replies += grid.replies
    unpinned = make_world(pin_app=False)
    grid = _executor_grid(unpinned, legit)
    run_coordinator(grid, unpinned.job(rounds=1), engine="inprocess")
    replies += grid.replies
    errors = set()
    forbidden = [str(tmp_path).encode(), world.permit.permit_jti.encode(), b"node-keys", b"/"]
    for reply in replies:
        assert not reply.has_error()
        content = reply.content
        assert set(content.config_records) == {"site"}
        site = dict(content.config_records["site"])
        assert set(site) <= {"site-id", "error"}
        assert site["site-id"] in (*SITES, "unknown")
        if "error" in site:
            assert isinstance(site["error"], str) and CODE.match(site["error"])
            errors.add(site["error"])
        assert set(content.array_records) <= {"trees"}
        for metrics in content.metric_records.values():
            assert set(metrics) <= {"num-examples", "trees", "auc", "logloss", "accuracy"}
        text = orjson.dumps(site)
        assert not any(f in text for f in forbidden), text
    # every path was exercised
    assert {"app_reference_mismatch", "app_ships_code", "job_config", "app_not_pinned"} <= errors
    assert any("error" not in dict(r.content.config_records["site"]) for r in replies)


def test_a_refusal_stands_when_the_audit_log_is_unavailable(world: World, tmp_path: Path) -> None:
    broken = FactoryRef("tests.federation.helpers:broken_sink", {})
    grid = _executor_grid(world, _attack_fab(shadowing_clientapp, tmp_path), audit=broken)
    result = run_coordinator(grid, world.job(rounds=1), engine="inprocess")
    assert result.status == "failed"
    assert set(result.failed_sites.values()) == {"app_ships_code"}
