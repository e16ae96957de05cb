"""Status lists travel from the HDAB service to a hospital gateway: push, conditional poll.

Both services are real aiohttp servers on loopback ports; the gateway's
``PermitGuard`` decides signed access requests at ``POST /permits/check``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.client_keys import KeyRing
from gateway.status_sync import StatusSync
from permits import TrustList, generate_key, load_jwk, trusted_key
from permits.errors import VerificationError
from permits.reasons import ReasonCode
from permits.request import make_request
from tests.gateway.conftest import Api, Keys, application_body, make_config, node_config

TRAIN = {
    "spec_hash": "sha256:" + "a" * 64,
    "rounds": 1,
    "max_depth": 4,
    "min_child_weight": 10.0,
    "strategy": "bagging",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pair:
    hdab: Api
    node: Api
    sync: StatusSync
    keys: Keys
    root: Path


async def _pair(
    tmp_path: Path, keys: Keys, site_data: Path, *, push: bool, poll: int
) -> AsyncIterator[Pair]:
    from gateway.hdab_service import create_hdab_app
    from gateway.node_service import create_node_app
    from gateway.status_sync import SYNC_KEY

    hdab_key = generate_key()
    key_path = tmp_path / "hdab-signing.jwk"
    key_path.write_text(hdab_key.export_private())
    trust_path = tmp_path / "trust_list.json"
    trust_path.write_bytes(
        orjson.dumps(TrustList([trusted_key(hdab_key, "hdab-test", "FI")]).to_dict())
    )
    node_port = _free_port()
    hdab_env = {
        "EHDS_HDAB_DATABASE": f"sqlite:///{tmp_path}/hdab.sqlite",
        "EHDS_AUDIT_DATABASE": str(tmp_path / "hdab-audit.sqlite"),
        "EHDS_HDAB_SIGNING_KEY": str(key_path),
    }
    if push:
        hdab_env["EHDS_HDAB_PUSH_TO"] = f"http://127.0.0.1:{node_port}"
    hdab_app = create_hdab_app(make_config(tmp_path / "h", "hdab", **hdab_env), keys=keys.ring())
    hdab_client = TestClient(TestServer(hdab_app, host="127.0.0.1"))
    await hdab_client.start_server()
    ring: KeyRing = keys.ring()
    push_key = load_jwk(tmp_path / "h" / "keys" / "hdab.jwk")  # the HDAB's service key pushes
    ring.add(push_key, org="hdab-test", roles=["hdab_staff"])
    ncfg = node_config(
        tmp_path / "n",
        site_data,
        EHDS_NODE_PERMITS_TRUST_LIST=str(trust_path),
        EHDS_NODE_PERMITS_ISSUERS=f"hdab-test={hdab_client.make_url('')}".rstrip("/"),
        EHDS_NODE_PERMITS_POLL_SECONDS=str(poll),
    )
    node_app = create_node_app(ncfg, keys=ring)
    node_client = TestClient(TestServer(node_app, host="127.0.0.1", port=node_port))
    await node_client.start_server()
    sync = node_app[SYNC_KEY]
    assert isinstance(sync, StatusSync)
    try:
        yield Pair(Api(hdab_client, "hdab-test"), Api(node_client, "site-a"), sync, keys, tmp_path)
    finally:
        await node_client.close()
        await hdab_client.close()


@pytest.fixture
async def pushed(tmp_path: Path, keys: Keys, site_data: Path) -> AsyncIterator[Pair]:
    async for pair in _pair(tmp_path, keys, site_data, push=True, poll=3600):
        yield pair


@pytest.fixture
async def polled(tmp_path: Path, keys: Keys, site_data: Path) -> AsyncIterator[Pair]:
    async for pair in _pair(tmp_path, keys, site_data, push=False, poll=1):
        yield pair


async def _issue(pair: Pair) -> dict[str, Any]:
    keys = pair.keys
    resp = await pair.hdab.call(
        "POST", "/applications", key=keys.user, json=application_body(keys.user, keys.person)
    )
    app_id = (await resp.json())["id"]
    await pair.hdab.call(
        "POST", f"/applications/{app_id}/decision", key=keys.staff, json={"decision": "approve"}
    )
    resp = await pair.hdab.call("POST", f"/applications/{app_id}/permit", key=keys.staff, json={})
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


#: Waiting for a revocation checks with ``evaluate``, which spends no rounds: a train
#: request every 50 ms would exhaust the permit's 5 rounds before a 1 s poll arrives.
EVALUATE = {"spec_hash": TRAIN["spec_hash"]}


async def _check(pair: Pair, issued: dict[str, Any], op: str = "train") -> tuple[int, str | None]:
    params = TRAIN if op == "train" else EVALUATE
    proof = make_request(
        pair.keys.person,
        permit=issued["jti"],
        permit_hash=issued["permit_hash"],
        holder="site-a",
        op=op,  # type: ignore[arg-type]
        params=params,
    )
    body = {"permit": issued["token"], "proof": proof, "operation": op, "params": params}
    resp = await pair.node.call("POST", "/permits/check", key=pair.keys.user, json=body)
    data = await resp.json()
    return resp.status, data.get("code")


async def _until(
    pair: Pair, issued: dict[str, Any], want: int, seconds: float = 15.0, op: str = "train"
) -> str | None:
    deadline = time.monotonic() + seconds
    while True:
        status, code = await _check(pair, issued, op)
        if status == want or time.monotonic() > deadline:
            assert status == want, code
            return code
        await asyncio.sleep(0.05)


async def _revoke(pair: Pair, jti: str) -> None:
    resp = await pair.hdab.call(
        "POST", f"/permits/{jti}/revoke", key=pair.keys.staff, json={"reason": "breach_of_terms"}
    )
    assert resp.status == 200, await resp.text()


async def test_a_pushed_revocation_reaches_the_gateway(pushed: Pair) -> None:
    issued = await _issue(pushed)
    await _until(pushed, issued, 200)  # the list carrying the new permit was pushed
    await _revoke(pushed, issued["jti"])
    assert await _until(pushed, issued, 403, op="evaluate") == "PERMIT_REVOKED"
    state = pushed.sync.state["hdab-test"]
    assert state.pushes >= 2  # issue and revoke arrived by push (the poll runs hourly)
    # the refusal is the guard's own audited decision, naming the requester
    resp = await pushed.node.call("GET", "/audit/entries?start=0&end=50", key=pushed.keys.auditor)
    assert resp.status == 200, await resp.text()


async def test_a_polled_revocation_reaches_the_gateway_with_conditional_requests(
    polled: Pair,
) -> None:
    issued = await _issue(polled)
    await _until(polled, issued, 200)
    await asyncio.sleep(1.5)  # at least one more poll of an unchanged list
    state = polled.sync.state["hdab-test"]
    assert state.not_modified >= 1  # If-None-Match answered 304
    await _revoke(polled, issued["jti"])
    assert await _until(polled, issued, 403, op="evaluate") == "PERMIT_REVOKED"
    assert state.pushes == 0


async def test_ready_and_metrics_show_each_list(pushed: Pair) -> None:
    await _issue(pushed)
    resp = await pushed.node.call("GET", "/ready")
    assert (await resp.json())["checks"]["status_lists"] == "ok"
    text = await (await pushed.node.call("GET", "/metrics")).text()
    assert 'ehds_status_list_version{hdab="hdab-test"}' in text
    assert 'ehds_status_list_age_seconds{hdab="hdab-test"}' in text
    resp = await pushed.node.call("GET", "/status-lists", key=pushed.keys.operator)
    (row,) = (await resp.json())["lists"]
    assert row["hdab"] == "hdab-test" and row["fresh"] and row["version"] >= 1
    with pytest.raises(VerificationError) as exc:  # older than max age: its own reason
        pushed.sync.check(now=time.time() + 4000)
    assert exc.value.reason is ReasonCode.STATUS_LIST_STALE


async def test_an_older_pushed_list_is_refused_as_rollback(pushed: Pair) -> None:
    resp = await pushed.hdab.call("GET", "/status-list")
    old = (await resp.json())["token"]
    issued = await _issue(pushed)  # publishes a newer list, pushed to the gateway
    await _until(pushed, issued, 200)
    push_key = load_jwk(pushed.root / "h" / "keys" / "hdab.jwk")
    resp = await pushed.node.call("POST", "/status-lists", key=push_key, json={"token": old})
    assert resp.status == 403
    assert (await resp.json())["code"] == "PERMIT_STATUS_LIST_ROLLBACK"


async def test_status_lists_are_signed_by_a_separate_status_key(pushed: Pair) -> None:
    """The node pinned the HDAB's status key from its signed JWKS; the permit key is not it."""
    from gateway.hdab_service import HDAB_KEY

    issued = await _issue(pushed)
    await _until(pushed, issued, 200)
    assert pushed.hdab.client.app is not None
    service = pushed.hdab.client.app[HDAB_KEY]
    assert service.status_key is not None
    status_kid = service.status_key.thumbprint()
    assert status_kid != service.key.thumbprint()
    pinned = pushed.sync.store.trust.get(status_kid)
    assert pinned is not None and {u.value for u in pinned.public.uses} == {"status"}


async def test_a_rotated_key_is_followed_and_the_retired_one_refused(pushed: Pair) -> None:
    from gateway.hdab_service import HDAB_KEY
    from permits import sign_permit
    from permits.model import Permit
    from trust import parse_jws

    before = await _issue(pushed)
    await _until(pushed, before, 200)
    assert pushed.hdab.client.app is not None
    service = pushed.hdab.client.app[HDAB_KEY]
    old_key = service.key
    resp = await pushed.hdab.call("POST", "/keys/rotate", key=pushed.keys.staff, json={})
    assert resp.status == 200, await resp.text()
    await asyncio.sleep(1.1)  # the next permit is signed after the old key's retirement
    after = await _issue(pushed)  # signed by the new key: the gateway follows the rotation
    await _until(pushed, after, 200)
    assert (await _check(pushed, before))[0] == 200  # old-key permits stay valid
    # a new permit signed by the retired key (e.g. a thief with the old key) is refused
    permit = Permit.model_validate_json(parse_jws(after["token"]).payload)
    forged = sign_permit(permit.model_copy(update={"jti": "permit-forged-1"}), [old_key])
    status, code = await _check(pushed, {**after, "token": forged, "jti": "permit-forged-1"})
    assert (status, code) == (403, "PERMIT_KEY_NOT_VALID")
