"""Hospital gateway over real HTTP on loopback, on a synthetic FHIR cohort."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from federation.site_runtime import RunRecord, append_run
from fhir_adapters.testing.synthetic import synthetic_spec_document
from gateway.config import FlowerSettings
from gateway.errors import ConfigError
from gateway.node_service import create_node_app
from gateway.supernode import SuperNode
from tests.gateway.conftest import Api, Keys, node_config, start
from tests.gateway.test_hdab_api import problem


async def audit_size(api: Api) -> int:
    return int((await (await api.call("GET", "/audit/checkpoint")).json())["size"])


async def test_health_ready_and_source_status(node: Api, keys: Keys) -> None:
    assert (await (await node.call("GET", "/health")).json())["service"] == "node"
    ready = await node.call("GET", "/ready")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["checks"] == {
        "audit_log": "ok",
        "fhir_source": "ok",
        "supernode": "ok",
    }
    status = await (await node.call("GET", "/fhir/status", key=keys.operator)).json()
    assert status["reachable"] is True and status["files"] == 3
    assert "path" not in status
    await problem(await node.call("GET", "/fhir/status"), 401, "AUTH_MISSING")
    await problem(
        await node.call("GET", "/fhir/status", key=keys.stranger), 401, "AUTH_UNKNOWN_KEY"
    )


async def test_ready_is_503_when_source_missing(tmp_path: Path, keys: Keys) -> None:
    client = await start(
        create_node_app(node_config(tmp_path, tmp_path / "absent"), keys=keys.ring())
    )
    try:
        resp = await client.get("/ready")
        assert resp.status == 503
        assert (await resp.json())["checks"]["fhir_source"] == "FHIR_UNAVAILABLE"
    finally:
        await client.close()


async def test_dry_run_returns_only_counts_and_is_audited(node: Api, keys: Keys) -> None:
    before = await audit_size(node)
    resp = await node.call(
        "POST", "/features/dry-run", key=keys.user, json={"spec": synthetic_spec_document()}
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["patients"] == 120
    from jsonschema import Draft202012Validator

    doc = await (await node.call("GET", "/openapi.json")).json()
    schema = doc["paths"]["/features/dry-run"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    Draft202012Validator(schema).validate(body)
    floor = body["disclosure_floor"]
    for counts in body["features"].values():
        for n in counts.values():
            assert n is None or n == 0 or n >= floor
    assert set(body["label"]) == {"positive", "negative"}
    text = orjson.dumps(body).decode()
    assert "Patient/" not in text and "birth" not in text
    assert await audit_size(node) == before + 1
    entries = await (
        await node.call("GET", f"/audit/entries?start={before}", key=keys.auditor)
    ).json()
    event = entries["entries"][0]["payload"]
    assert event["type"] == "data.extracted"
    assert event["details"]["spec_hash"] == body["spec_hash"]
    assert event["subject"]["site"] == "site-a"
    assert event["subject"]["request"] == resp.headers["X-Request-Id"]


async def test_opt_outs_are_excluded_and_small_counts_withheld(
    tmp_path: Path, keys: Keys, site_data: Path
) -> None:
    ids = [
        orjson.loads(line)["id"]
        for line in (site_data / "Patient.ndjson").read_bytes().splitlines()[:3]
    ]
    registry = tmp_path / "optout.txt"
    registry.write_text("\n".join(ids) + "\n")
    config = node_config(tmp_path, site_data, EHDS_NODE_OPT_OUT=str(registry))
    client = await start(create_node_app(config, keys=keys.ring()))
    try:
        api = Api(client, "site-a")
        resp = await api.call(
            "POST", "/features/dry-run", key=keys.operator, json={"spec": synthetic_spec_document()}
        )
        body = await resp.json()
        assert body["patients"] == 117
        assert body["excluded_opt_out"] is None  # 3 < floor: withheld, not shown
        assert "excluded_opt_out" in body["withheld"]
    finally:
        await client.close()


async def test_cohort_below_floor_is_refused_and_not_audited(
    tmp_path: Path, keys: Keys, tiny_site: Path
) -> None:
    client = await start(create_node_app(node_config(tmp_path, tiny_site), keys=keys.ring()))
    try:
        api = Api(client, "site-a")
        before = await audit_size(api)
        resp = await api.call(
            "POST", "/features/dry-run", key=keys.user, json={"spec": synthetic_spec_document()}
        )
        body = await problem(resp, 422, "BELOW_DISCLOSURE_FLOOR")
        assert "3" not in body["detail"]
        assert await audit_size(api) == before
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"{", 400, "BAD_JSON"),
        (b"[]", 400, "BAD_JSON"),
        (b'{"spec": "not an object"}', 422, "VALIDATION_FAILED"),
        (b'{"nospec": {}}', 422, "VALIDATION_FAILED"),
    ],
)
async def test_dry_run_bad_input(
    node: Api, keys: Keys, payload: bytes, status: int, code: str
) -> None:
    before = await audit_size(node)
    resp = await node.call(
        "POST",
        "/features/dry-run",
        key=keys.user,
        raw=payload,
        headers={"Content-Type": "application/json"},
    )
    await problem(resp, status, code)
    assert await audit_size(node) == before


async def test_dry_run_invalid_spec_is_422_with_the_adapter_code(node: Api, keys: Keys) -> None:
    before = await audit_size(node)
    resp = await node.call(
        "POST", "/features/dry-run", key=keys.user, json={"spec": {"specVersion": 1, "views": 3}}
    )
    assert resp.status == 422, await resp.text()
    body = await resp.json(content_type=None)
    assert body["code"] and body["code"] != "INTERNAL_ERROR"
    assert await audit_size(node) == before


async def test_dry_run_auth(node: Api, keys: Keys) -> None:
    spec = {"spec": synthetic_spec_document()}
    before = await audit_size(node)
    await problem(await node.call("POST", "/features/dry-run", json=spec), 401, "AUTH_MISSING")
    await problem(
        await node.call("POST", "/features/dry-run", key=keys.auditor, json=spec),
        403,
        "AUTH_FORBIDDEN",
    )
    await problem(
        await node.call(
            "POST", "/features/dry-run", key=keys.user, json=spec, audience="hdab-test"
        ),
        401,
        "AUTH_MISMATCH",
    )
    assert await audit_size(node) == before


async def test_dry_run_oversized_body(node: Api, keys: Keys) -> None:
    before = await audit_size(node)
    big = orjson.dumps({"spec": {"pad": "x" * 300_000}})
    await problem(
        await node.call("POST", "/features/dry-run", key=keys.user, raw=big), 413, "BODY_TOO_LARGE"
    )
    assert await audit_size(node) == before


async def test_audit_events_as_fhir_searchset(node: Api, keys: Keys) -> None:
    for _ in range(2):
        resp = await node.call(
            "POST", "/features/dry-run", key=keys.user, json={"spec": synthetic_spec_document()}
        )
        assert resp.status == 200
    resp = await node.call("GET", "/fhir/AuditEvent?_count=1", key=keys.auditor)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/fhir+json"
    bundle = await resp.json(content_type=None)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] >= 2
    assert len(bundle["entry"]) == 1
    assert bundle["entry"][0]["resource"]["resourceType"] == "AuditEvent"
    (nxt,) = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    resp = await node.call("GET", nxt, key=keys.auditor)
    second = await resp.json(content_type=None)
    assert second["entry"][0]["resource"]["id"] != bundle["entry"][0]["resource"]["id"]
    await problem(await node.call("GET", "/fhir/AuditEvent"), 401, "AUTH_MISSING")
    await problem(
        await node.call("GET", "/fhir/AuditEvent?_count=0", key=keys.auditor),
        400,
        "PARAMETER_OUT_OF_RANGE",
    )
    await problem(
        await node.call("GET", "/fhir/AuditEvent?_count=abc", key=keys.auditor),
        400,
        "PARAMETER_INVALID",
    )


async def test_node_audit_entries_need_a_signature_but_proofs_are_public(
    node: Api, keys: Keys
) -> None:
    await node.call(
        "POST", "/features/dry-run", key=keys.user, json={"spec": synthetic_spec_document()}
    )
    await problem(await node.call("GET", "/audit/entries"), 401, "AUTH_MISSING")
    await problem(await node.call("GET", "/audit/entries/0"), 401, "AUTH_MISSING")
    assert (await node.call("GET", "/audit/entries/0", key=keys.auditor)).status == 200
    assert (await node.call("GET", "/audit/proof/inclusion?index=0")).status == 200


async def test_flower_status_off(node: Api, keys: Keys) -> None:
    status = await (await node.call("GET", "/flower/status", key=keys.operator)).json()
    assert status == {"mode": "off", "superlink": "127.0.0.1:9092"}


async def test_supernode_child_is_started_and_stopped(
    tmp_path: Path, keys: Keys, site_data: Path
) -> None:
    settings = FlowerSettings(
        mode="run", command=(sys.executable, "-c", "import time; time.sleep(120)")
    )
    supernode = SuperNode(settings, stop_timeout=5)
    client = await start(
        create_node_app(node_config(tmp_path, site_data), keys=keys.ring(), supernode=supernode)
    )
    api = Api(client, "site-a")
    assert supernode.process is not None and supernode.runtime is not None
    # the SuperNode launches no ClientApp itself: the gateway's executor serves its tasks
    cmdline = Path(f"/proc/{supernode.process.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[cmdline.index(b"--isolation") + 1] == b"process"
    assert b"--superexec-auth-secret-file" in cmdline
    digest = "sha256:" + "a" * 64
    append_run(supernode.runtime.runs_file, RunRecord(7, digest, "train", "ok", 1))
    append_run(supernode.runtime.runs_file, RunRecord(8, None, "train", "app_malformed", 2))
    status = await (await api.call("GET", "/flower/status", key=keys.operator)).json()
    assert status["running"] is True and isinstance(status["pid"], int)
    assert status["executor_running"] is True
    assert [(r["run_id"], r["app_digest"], r["refused"]) for r in status["runs"]] == [
        (7, digest, 0),
        (8, None, 1),
    ]
    assert (await api.call("GET", "/ready")).status == 200
    executor = supernode.executor
    assert executor is not None
    await client.close()
    assert supernode.process.returncode is not None  # stopped on shutdown
    assert executor.returncode is not None


async def test_supernode_command_may_not_choose_its_own_isolation() -> None:
    settings = FlowerSettings(mode="run", command=("flower-supernode", "--isolation", "subprocess"))
    with pytest.raises(ConfigError) as err:
        await SuperNode(settings).start()
    assert err.value.code == "SUPERNODE_COMMAND"


async def test_supernode_connect_reports_reachability(
    tmp_path: Path, keys: Keys, site_data: Path
) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    supernode = SuperNode(FlowerSettings(mode="connect", superlink=f"127.0.0.1:{port}"))
    client = await start(
        create_node_app(node_config(tmp_path, site_data), keys=keys.ring(), supernode=supernode)
    )
    try:
        status: dict[str, Any] = await (
            await Api(client, "site-a").call("GET", "/flower/status", key=keys.auditor)
        ).json()
        assert status["superlink_reachable"] is True
    finally:
        await client.close()
        server.close()


async def test_decisions_written_by_another_process_reach_metrics(
    node: Api, keys: Keys, tmp_path: Path
) -> None:
    """The ClientApp's PermitGuard writes access.denied into the node's log from its own process."""
    from audit_chain import EventSigner
    from audit_chain.log import AuditLog
    from audit_chain.sink import SignedLogSink

    key = orjson.loads((tmp_path / "keys" / "node.jwk").read_bytes())
    signer = EventSigner("site-a", key)
    log = AuditLog.open(str(tmp_path / "node-audit.sqlite"), log_id="site-a:audit", signer=signer)
    try:
        SignedLogSink(log, signer).record(
            "access.denied",
            subject={"permit": "permit-1", "site": "site-a"},
            details={"reason": "rounds_exceeded"},
        )
    finally:
        log.close()
    line = 'ehds_permit_decisions_total{event="access.denied",reason="rounds_exceeded"} 1'
    for _ in range(40):  # the node's cached checkpoint is refreshed about once a second
        await asyncio.sleep(0.1)
        text = await (await node.call("GET", "/metrics")).text()
        if line in text:
            break
    assert line in text
    text = await (await node.call("GET", "/metrics")).text()  # counted once, not per scrape
    assert line in text


async def test_dry_runs_are_for_operators_by_default(
    tmp_path: Path, keys: Keys, site_data: Path
) -> None:
    from gateway.config import load_config

    config = load_config(
        service="node",
        env={
            "EHDS_DATA_DIR": str(tmp_path),
            "EHDS_NODE_SITE": "site-a",
            "EHDS_NODE_FHIR_PATH": str(site_data),
            "EHDS_AUDIT_DATABASE": ":memory:",
        },
    )
    assert config.node.dry_run_roles == ("operator",)
    client = await start(create_node_app(config, keys=keys.ring()))
    try:
        api = Api(client, "site-a")
        spec = {"spec": synthetic_spec_document()}
        await problem(
            await api.call("POST", "/features/dry-run", key=keys.user, json=spec),
            403,
            "AUTH_FORBIDDEN",
        )
        assert (
            await api.call("POST", "/features/dry-run", key=keys.operator, json=spec)
        ).status == 200
    finally:
        await client.close()


async def test_network_source_status_reads_the_capability_statement(
    tmp_path: Path, keys: Keys
) -> None:
    from aiohttp import web

    async def metadata(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "kind": "instance",
                "fhirVersion": "4.0.1",
                "format": ["json"],
                "rest": [
                    {
                        "mode": "server",
                        "resource": [{"type": "Patient"}],
                        "operation": [{"name": "export"}],
                    }
                ],
            }
        )

    fhir_app = web.Application()
    fhir_app.router.add_get("/fhir/metadata", metadata)
    fhir = await start(fhir_app)
    base = str(fhir.make_url("/fhir"))
    config = node_config(
        tmp_path, tmp_path, EHDS_NODE_FHIR_KIND="search", EHDS_NODE_FHIR_BASE_URL=base
    )
    client = await start(create_node_app(config, keys=keys.ring()))
    try:
        api = Api(client, "site-a")
        status = await (await api.call("GET", "/fhir/status", key=keys.operator)).json()
        assert status["reachable"] is True
        assert status["capability"]["release"] == "R4"
        assert "/fhir" not in status["origin"]  # origin only, never the full URL
        # This server answers /metadata only: no sync can succeed, so there is no local
        # snapshot to serve. Not ready, and dry runs refused (fail closed; see test_fhir_sync).
        resp = await api.call("GET", "/ready")
        assert resp.status == 503
        assert (await resp.json())["checks"]["fhir_source"] == "FHIR_SNAPSHOT_MISSING"
        resp = await api.call(
            "POST", "/features/dry-run", key=keys.operator, json={"spec": synthetic_spec_document()}
        )
        await problem(resp, 503, "FHIR_SNAPSHOT_MISSING")
    finally:
        await client.close()
    await fhir.close()


async def test_concurrent_dry_runs_beyond_the_limit_are_refused_early(
    node: Api, keys: Keys
) -> None:
    from gateway.node_service import MAX_DRY_RUNS

    spec = {"spec": synthetic_spec_document()}
    results = await asyncio.gather(
        *(
            node.call("POST", "/features/dry-run", key=keys.operator, json=spec)
            for _ in range(MAX_DRY_RUNS + 2)
        )
    )
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) >= 1
    assert statuses.count(503) >= 1  # all arrive within milliseconds; a dry run takes seconds
    assert set(statuses) <= {200, 503}
    for r in results:
        if r.status == 503:
            assert (await r.json(content_type=None))["code"] == "DRY_RUN_BUSY"
