"""Acceptance: ``ehds hdab serve`` and two ``ehds node serve`` as separate processes.

issue -> allowed at both sites -> revoke over HTTP -> the next request at both
sites is refused (the time from revoke to first refusal is measured and
printed, not asserted) -> a site restarted with the older list on disk refuses
(``status_list_rollback``) -> the HDAB rotates its permit key mid-run: a permit
signed before keeps working, one signed after by the new key is allowed (the
gateway follows the signed JWKS), one signed by the retired key is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from jwcrypto import jwk

from gateway.client_keys import KeyRing
from gateway.http.client import ServiceClient, ServiceError
from permits import TrustList, generate_key, sign_permit, trusted_key
from permits.model import Permit
from permits.request import make_request
from tests.gateway.conftest import application_body
from tests.gateway.test_serve import ROOT, free_port
from tests.gateway.test_status_travel import TRAIN
from trust import parse_jws

SITES = ("site-a", "site-b")


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    url: str


def spawn(service: str, data_dir: Path, port: int, env: dict[str, str]) -> Proc:
    full = {
        **os.environ,
        "EHDS_SERVER_SHUTDOWN_TIMEOUT": "2",
        "EHDS_SERVER_ACCESS_LOG": "false",
        **env,
    }
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            service,
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--json",
        ],
        cwd=ROOT,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert popen.stdout is not None
    line = popen.stdout.readline()  # blocks until listening
    assert line, f"{service} did not start"
    return Proc(popen, json.loads(line)["url"])


def stop(proc: Proc) -> None:
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()


@dataclass
class World:
    root: Path
    hdab_key: jwk.JWK
    staff: jwk.JWK
    user: jwk.JWK
    person: jwk.JWK
    ports: dict[str, int]
    procs: dict[str, Proc]

    def node_env(self, site: str, *, poll: bool = True) -> dict[str, str]:
        env = {
            "EHDS_NODE_SITE": site,
            "EHDS_NODE_FHIR_PATH": str(self.root / "fhir"),
            "EHDS_NODE_PERMITS_TRUST_LIST": str(self.root / "trust_list.json"),
            "EHDS_NODE_PERMITS_POLL_SECONDS": "2",
        }
        if poll:
            env["EHDS_NODE_PERMITS_ISSUERS"] = f"hdab-test=http://127.0.0.1:{self.ports['hdab']}"
        return env

    def start_node(self, site: str, *, poll: bool = True) -> None:
        self.procs[site] = spawn(
            "node", self.root / site, self.ports[site], self.node_env(site, poll=poll)
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    from fhir_adapters.testing.synthetic import CohortConfig, write_ndjson

    (folder,) = write_ndjson(CohortConfig(n_patients=20, n_sites=1, seed=4), tmp_path / "gen")
    folder.rename(tmp_path / "fhir")
    hdab_key, staff, user, person = (generate_key() for _ in range(4))
    (tmp_path / "hdab" / "keys").mkdir(parents=True)
    (tmp_path / "hdab" / "keys" / "hdab.jwk").write_text(hdab_key.export_private())
    hdab_ring = KeyRing()
    hdab_ring.add(staff, org="hdab-test", roles=["hdab_staff"])
    hdab_ring.add(user, org="org-research-1", roles=["data_user"])
    (tmp_path / "hdab" / "hdab-clients.jwks.json").write_bytes(orjson.dumps(hdab_ring.to_jwks()))
    node_ring = KeyRing()
    node_ring.add(hdab_key, org="hdab-test", roles=["hdab_staff"])  # its pushes
    node_ring.add(user, org="org-research-1", roles=["data_user"])
    for site in SITES:
        (tmp_path / site).mkdir()
        (tmp_path / site / "node-clients.jwks.json").write_bytes(orjson.dumps(node_ring.to_jwks()))
    trust = TrustList([trusted_key(hdab_key, "hdab-test", "FI")])
    (tmp_path / "trust_list.json").write_bytes(orjson.dumps(trust.to_dict()))
    ports = {"hdab": free_port(), **{s: free_port() for s in SITES}}
    w = World(tmp_path, hdab_key, staff, user, person, ports, {})
    try:
        push = ",".join(f"http://127.0.0.1:{ports[s]}" for s in SITES)
        w.procs["hdab"] = spawn(
            "hdab",
            tmp_path / "hdab",
            ports["hdab"],
            {"EHDS_HDAB_ID": "hdab-test", "EHDS_HDAB_COUNTRY": "FI", "EHDS_HDAB_PUSH_TO": push},
        )
        for site in SITES:
            w.start_node(site)
        yield w
    finally:
        for proc in w.procs.values():
            stop(proc)


async def _issue(w: World) -> dict[str, Any]:
    body = application_body(w.user, w.person)
    body["data"] = [dict(body["data"][0], holder=s) for s in SITES]
    hdab = w.procs["hdab"].url
    async with ServiceClient(hdab, key=w.user) as as_user:
        app_id = (await as_user.post("/applications", body))["id"]
    async with ServiceClient(hdab, key=w.staff) as staff:
        await staff.post(f"/applications/{app_id}/decision", {"decision": "approve"})
        return dict(await staff.post(f"/applications/{app_id}/permit", {}))


async def _check(w: World, site: str, issued: dict[str, Any]) -> str:
    proof = make_request(
        w.person,
        permit=issued["jti"],
        permit_hash=issued["permit_hash"],
        holder=site,
        op="train",
        params=TRAIN,
    )
    body = {"permit": issued["token"], "proof": proof, "operation": "train", "params": TRAIN}
    try:
        async with ServiceClient(w.procs[site].url, key=w.user) as client:
            await client.post("/permits/check", body)
        return "ALLOWED"
    except ServiceError as exc:
        return exc.code


async def _until(w: World, site: str, issued: dict[str, Any], want: str) -> float:
    started = time.monotonic()
    while True:
        got = await _check(w, site, issued)
        if got == want:
            return time.monotonic() - started
        assert time.monotonic() - started < 30, f"{site}: {got}, waiting for {want}"
        await asyncio.sleep(0.02)


@pytest.mark.slow
def test_revocation_reaches_running_sites_and_a_restart_cannot_undo_it(world: World) -> None:
    async def scenario() -> None:
        issued = await _issue(world)
        for site in SITES:  # the list carrying the new permit is pushed to both sites
            await _until(world, site, issued, "ALLOWED")
        async with ServiceClient(world.procs["hdab"].url) as public:
            older = (await public.get("/status-list"))["token"]
        async with ServiceClient(world.procs["hdab"].url, key=world.staff) as staff:
            revoked_at = time.monotonic()
            await staff.post(f"/permits/{issued['jti']}/revoke", {"reason": "breach_of_terms"})
        latencies = await asyncio.gather(
            *(_until(world, s, issued, "PERMIT_REVOKED") for s in SITES)
        )
        total = time.monotonic() - revoked_at
        print(  # measured, never asserted
            "\nrevoke -> first refusal: "
            + ", ".join(f"{s} {t * 1000:.0f} ms" for s, t in zip(SITES, latencies, strict=True))
            + f" (both within {total * 1000:.0f} ms of the revoke call)"
        )
        # restart site-a with the older list put back, and nothing to poll: refused
        stop(world.procs["site-a"])
        (world.root / "site-a" / "status_lists" / "hdab-test.jws").write_text(older)
        world.start_node("site-a", poll=False)
        assert await _check(world, "site-a", issued) == "PERMIT_STATUS_LIST_ROLLBACK"
        async with ServiceClient(world.procs["site-a"].url) as public:
            with pytest.raises(ServiceError) as exc:
                await public.get("/ready")
        assert exc.value.status == 503
        assert await _check(world, "site-b", issued) == "PERMIT_REVOKED"

        # key rotation mid-run at site-b
        kept = await _issue(world)
        await _until(world, "site-b", kept, "ALLOWED")
        async with ServiceClient(world.procs["hdab"].url, key=world.staff) as staff:
            rotated = await staff.post("/keys/rotate", {})
        assert rotated["kid"] != world.hdab_key.thumbprint()
        await asyncio.sleep(1.1)  # strictly after the old key's retirement
        fresh = await _issue(world)  # signed by the new key
        await _until(world, "site-b", fresh, "ALLOWED")
        assert await _check(world, "site-b", kept) == "ALLOWED"  # old-key permit stays valid
        permit = Permit.model_validate_json(parse_jws(fresh["token"]).payload)
        forged = permit.model_copy(update={"jti": "permit-forged-after-rotation"})
        token = sign_permit(forged, [world.hdab_key])  # the retired key signs something new
        stolen = {**fresh, "token": token, "jti": forged.jti}
        assert await _check(world, "site-b", stolen) == "PERMIT_KEY_NOT_VALID"

    asyncio.run(scenario())
