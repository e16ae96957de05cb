"""The hospital gateway keeps a local FHIR snapshot in sync with its server (issue #19).

A real ``create_node_app`` on loopback pulls from the aiohttp FHIR test server
(a stand-in for the hospital's FHIR server: none runs here), with SMART
Backend Services auth, by Bulk ``$export`` and by search. Resources are added
and deleted on the server between dry runs; the next dry run reflects both
without a restart. Sync failures leave the previous snapshot in use and show.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapters.testing.fhir_test_server import (
    ExportBehaviour,
    FhirTestServer,
    ServerConfig,
    SmartSettings,
    load_ndjson_dir,
)
from fhir_adapters.testing.synthetic import synthetic_spec_document
from gateway.fhir_sync import build_version, read_meta
from gateway.node_service import create_node_app
from tests.gateway.conftest import Api, Keys, node_config, start
from trust import client_jwks, generate_client_key


async def _ready(api: Api, *, timeout: float = 60.0) -> dict[str, Any]:
    for _ in range(int(timeout / 0.1)):
        resp = await api.client.get("/ready")
        body = dict(await resp.json())
        if resp.status == 200:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"node never became ready: {body}")


async def _dry_run(api: Api, keys: Keys) -> dict[str, Any]:
    resp = await api.call(
        "POST", "/features/dry-run", key=keys.operator, json={"spec": synthetic_spec_document()}
    )
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


@asynccontextmanager
async def _node(tmp_path: Path, keys: Keys, **env: str) -> AsyncIterator[Api]:
    settings = {
        "EHDS_NODE_FHIR_SYNC_INTERVAL_SECONDS": "0",
        "EHDS_NODE_FHIR_POLL_FLOOR_SECONDS": "0.05",
        **env,
    }
    config = node_config(tmp_path, tmp_path, **settings)
    client = await start(create_node_app(config, keys=keys.ring()))
    try:
        yield Api(client, "site-a")
    finally:
        await client.close()


def _new_patient(template: dict[str, Any], pid: str) -> dict[str, Any]:
    return {**template, "id": pid}


async def test_gateway_syncs_by_export_with_smart_and_reflects_adds_and_deletes(
    tmp_path: Path, keys: Keys, site_data: Path
) -> None:
    key = generate_client_key("ES384")
    key_file = tmp_path / "client.jwk"
    key_file.write_text(key.export_private())
    smart = SmartSettings(clients={"gateway": client_jwks([key])})
    server = FhirTestServer(ServerConfig(ndjson_dir=site_data, smart=smart))
    async with (
        server as srv,
        _node(
            tmp_path,
            keys,
            EHDS_NODE_FHIR_KIND="export",
            EHDS_NODE_FHIR_BASE_URL=srv.base_url,
            EHDS_NODE_FHIR_CLIENT_ID="gateway",
            EHDS_NODE_FHIR_KEY=str(key_file),
        ) as api,
    ):
        ready = await _ready(api)
        assert ready["checks"]["fhir_source"]["snapshot_version"] == 1
        assert ready["checks"]["fhir_source"]["last_error"] is None
        first = await _dry_run(api, keys)
        assert srv.counts["token_issued"] >= 1  # SMART Backend Services, not an open server
        patients = list(srv.by_type["Patient"])
        before = first["patients"]
        assert before == len(patients)
        version = (await _ready(api))["checks"]["fhir_source"]["snapshot_version"]

        old_version = (tmp_path / "fhir-snapshot" / "current").resolve()
        old_files = {p.name: p.read_bytes() for p in old_version.iterdir()}

        # On the hospital's server: two patients added, one deleted.
        srv.upsert(_new_patient(patients[0], "added-1"))
        srv.upsert(_new_patient(patients[1], "added-2"))
        srv.delete("Patient", str(patients[2]["id"]))

        second = await _dry_run(api, keys)  # no restart: the dry run pulls first
        assert second["patients"] == before + 1
        last_kickoff = srv.kickoff_queries[-1]
        assert "_since" in last_kickoff  # incremental, not a full re-export
        ready = await _ready(api)
        assert ready["checks"]["fhir_source"]["snapshot_version"] == version + 1
        metrics = await (await api.client.get("/metrics")).text()
        assert f"ehds_fhir_snapshot_version {version + 1}" in metrics
        # A job that resolved the old version before the switch reads it unchanged to the end.
        assert {p.name: p.read_bytes() for p in old_version.iterdir()} == old_files
        assert "ehds_fhir_sync_last_failed 0" in metrics
    current = tmp_path / "fhir-snapshot" / "current"
    ids = {r["id"] for r in load_ndjson_dir(current.resolve()) if r["resourceType"] == "Patient"}
    assert {"added-1", "added-2"} <= ids and str(patients[2]["id"]) not in ids


async def test_a_failed_sync_keeps_the_previous_snapshot_and_shows(
    tmp_path: Path, keys: Keys, site_data: Path
) -> None:
    behaviour = ExportBehaviour()
    server = FhirTestServer(ServerConfig(ndjson_dir=site_data, export=behaviour))
    async with (
        server as srv,
        _node(
            tmp_path, keys, EHDS_NODE_FHIR_KIND="export", EHDS_NODE_FHIR_BASE_URL=srv.base_url
        ) as api,
    ):
        await _ready(api)
        before = (await _dry_run(api, keys))["patients"]
        srv.delete("Patient", str(srv.by_type["Patient"][0]["id"]))
        behaviour.fail_types = ("Patient",)  # the server cannot export Patients this time
        after = await _dry_run(api, keys)
        assert after["patients"] == before  # the previous snapshot, not a partial one
        ready = await (await api.client.get("/ready")).json()
        detail = ready["checks"]["fhir_source"]
        assert detail["status"] == "ok" and detail["snapshot_version"] == 2  # start + 1st run
        assert detail["last_error"] == "FHIR_SYNC_PARTIAL"
        metrics = await (await api.client.get("/metrics")).text()
        assert "ehds_fhir_sync_last_failed 1" in metrics
        # The partial export's transactionTime never became the next _since: once the
        # server recovers, the deletion (older than that export) is still picked up.
        behaviour.fail_types = ()
        recovered = await _dry_run(api, keys)
        assert recovered["patients"] == before - 1
        assert (await (await api.client.get("/ready")).json())["checks"]["fhir_source"][
            "last_error"
        ] is None


async def test_search_sync_with_repeated_ids_and_history_deletions(
    tmp_path: Path, keys: Keys, site_data: Path
) -> None:
    config = ServerConfig(ndjson_dir=site_data, default_page_size=7, repeat_ids_across_pages=True)
    async with (
        FhirTestServer(config) as srv,
        _node(
            tmp_path,
            keys,
            EHDS_NODE_FHIR_KIND="search",
            EHDS_NODE_FHIR_BASE_URL=srv.base_url,
            EHDS_NODE_FHIR_TYPES="Patient,Observation,Condition",
        ) as api,
    ):
        await _ready(api)
        patients = list(srv.by_type["Patient"])
        before = (await _dry_run(api, keys))["patients"]
        assert before == len(patients)  # ids repeated across pages are counted once
        srv.upsert(_new_patient(patients[0], "added-1"))
        srv.upsert(_new_patient(patients[1], "added-2"))
        srv.delete("Patient", str(patients[2]["id"]))
        after = (await _dry_run(api, keys))["patients"]
        assert after == before + 1
        assert srv.counts["history"] >= 1
    current = (tmp_path / "fhir-snapshot" / "current").resolve()
    lines = (current / "Patient.ndjson").read_bytes().splitlines()
    ids = [orjson.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids))


async def test_no_snapshot_yet_is_not_ready_and_refuses_dry_runs(
    tmp_path: Path, keys: Keys, unused_tcp_port: int
) -> None:
    base = f"http://127.0.0.1:{unused_tcp_port}/fhir"  # nothing listens there
    async with _node(
        tmp_path, keys, EHDS_NODE_FHIR_KIND="export", EHDS_NODE_FHIR_BASE_URL=base
    ) as api:
        resp = await api.client.get("/ready")
        assert resp.status == 503
        assert (await resp.json())["checks"]["fhir_source"] == "FHIR_SNAPSHOT_MISSING"
        resp = await api.call(
            "POST", "/features/dry-run", key=keys.operator, json={"spec": synthetic_spec_document()}
        )
        assert resp.status == 503
        assert (await resp.json())["code"] == "FHIR_SNAPSHOT_MISSING"


def _write(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path


def test_build_version_merges_keeps_latest_and_applies_deletions(tmp_path: Path) -> None:
    def pat(pid: str, when: str, gender: str = "male") -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "id": pid,
            "meta": {"lastUpdated": when},
            "gender": gender,
        }

    old = tmp_path / "old"
    old.mkdir()
    _write(
        old / "Patient.ndjson", [pat("a", "2024-01-01T00:00:00Z"), pat("b", "2024-01-01T00:00:00Z")]
    )
    changes = _write(
        tmp_path / "changes.ndjson",
        [
            pat("c", "2024-03-01T00:00:00Z", "female"),
            pat("a", "2024-02-02T00:00:00Z", "female"),
            pat("c", "2024-02-01T00:00:00Z"),  # the same id again, older: loses
        ],
    )
    counts = build_version(old, [changes], {("Patient", "b")}, tmp_path / "new", {"version": 2})
    assert counts == {"Patient": 2}
    rows = {
        r["id"]: r["gender"]
        for r in map(orjson.loads, (tmp_path / "new" / "Patient.ndjson").read_bytes().splitlines())
    }
    assert rows == {"a": "female", "c": "female"}
    meta = read_meta(tmp_path / "new")
    assert meta is not None and meta["version"] == 2 and meta["resources"] == {"Patient": 2}
    with pytest.raises(FileExistsError):  # a version folder is written once, never over
        build_version(old, [changes], set(), tmp_path / "new", {"version": 2})


async def test_sync_runs_on_a_schedule_without_any_job(
    tmp_path: Path, keys: Keys, tiny_site: Path
) -> None:
    # Small files that overlap by one resource: the same ids arrive twice, kept once.
    behaviour = ExportBehaviour(resources_per_file=3, repeat_ids_across_files=True)
    async with (
        FhirTestServer(ServerConfig(ndjson_dir=tiny_site, export=behaviour)) as srv,
        _node(
            tmp_path,
            keys,
            EHDS_NODE_FHIR_KIND="export",
            EHDS_NODE_FHIR_BASE_URL=srv.base_url,
            EHDS_NODE_FHIR_SYNC_INTERVAL_SECONDS="1",
        ) as api,
    ):
        await _ready(api)
        srv.delete("Patient", str(srv.by_type["Patient"][0]["id"]))
        for _ in range(300):
            detail = (await (await api.client.get("/ready")).json())["checks"]["fhir_source"]
            if detail["snapshot_version"] >= 3:
                break
            await asyncio.sleep(0.1)
        assert detail["snapshot_version"] >= 3
        assert len(srv.kickoff_queries) >= 3 and "_since" in srv.kickoff_queries[-1]
    current = (tmp_path / "fhir-snapshot" / "current").resolve()
    keys_seen = [(r["resourceType"], r["id"]) for r in load_ndjson_dir(current)]
    assert len(keys_seen) == len(set(keys_seen)) == sum(len(v) for v in srv.by_type.values())
    versions = sorted(p.name for p in (tmp_path / "fhir-snapshot" / "versions").iterdir())
    assert len(versions) <= 3  # old versions are pruned


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EHDS_NODE_FHIR_KIND": "export"}, "base_url is required"),
        (
            {
                "EHDS_NODE_FHIR_KIND": "export",
                "EHDS_NODE_FHIR_BASE_URL": "https://fhir.example",
                "EHDS_NODE_FHIR_CLIENT_ID": "gw",
            },
            "go together",
        ),
        ({"EHDS_NODE_FHIR_SYNC_INTERVAL_SECONDS": "-1"}, "must be >= 0"),
    ],
)
def test_sync_settings_are_checked(tmp_path: Path, env: dict[str, str], message: str) -> None:
    from gateway.config import load_config
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(service="node", env={"EHDS_DATA_DIR": str(tmp_path), **env})


async def test_a_hanging_server_does_not_hold_a_job(
    tmp_path: Path, keys: Keys, tiny_site: Path
) -> None:
    behaviour = ExportBehaviour()
    async with (
        FhirTestServer(ServerConfig(ndjson_dir=tiny_site, export=behaviour)) as srv,
        _node(
            tmp_path,
            keys,
            EHDS_NODE_FHIR_KIND="export",
            EHDS_NODE_FHIR_BASE_URL=srv.base_url,
            EHDS_NODE_FHIR_SYNC_WAIT_SECONDS="0.5",
            EHDS_NODE_DISCLOSURE_FLOOR="5",
        ) as api,
    ):
        await _ready(api)
        behaviour.hold = True  # the next export never finishes
        resp = await api.call(
            "POST", "/features/dry-run", key=keys.operator, json={"spec": synthetic_spec_document()}
        )
        # The job ran on the snapshot at hand (a tiny cohort: refused below the floor,
        # which proves it read data instead of waiting on the server).
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["code"] == "BELOW_DISCLOSURE_FLOOR"
        detail = (await (await api.client.get("/ready")).json())["checks"]["fhir_source"]
        assert detail["snapshot_version"] == 1
