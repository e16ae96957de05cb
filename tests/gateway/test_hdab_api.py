"""HDAB service over real HTTP on loopback: the lifecycle and every refusal, nothing written on error."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from jwcrypto import jws

from audit_chain.checkpoint import parse_checkpoint
from gateway.http.problem import PROBLEM_TYPE
from tests.gateway.conftest import Api, Keys, application_body


async def problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM_TYPE
    body = await resp.json(content_type=None)
    assert body["code"] == code, body
    assert body["status"] == status
    assert {"type", "title"} <= set(body)
    return body


async def audit_size(api: Api) -> int:
    resp = await api.call("GET", "/audit/checkpoint")
    assert resp.status == 200
    return int((await resp.json())["size"])


async def apply(api: Api, keys: Keys, **overrides: Any) -> str:
    resp = await api.call(
        "POST",
        "/applications",
        key=keys.user,
        json=application_body(keys.user, keys.person, **overrides),
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert resp.headers["Location"] == f"/applications/{body['id']}"
    assert body["status"] == "pending"
    return str(body["id"])


async def issue(api: Api, keys: Keys) -> dict[str, Any]:
    app_id = await apply(api, keys)
    resp = await api.call(
        "POST", f"/applications/{app_id}/decision", key=keys.staff, json={"decision": "approve"}
    )
    assert resp.status == 200, await resp.text()
    resp = await api.call("POST", f"/applications/{app_id}/permit", key=keys.staff, json={})
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def test_full_lifecycle_is_audited(hdab: Api, keys: Keys) -> None:
    start = await audit_size(hdab)
    issued = await issue(hdab, keys)
    jti = issued["jti"]
    token = issued["token"]
    assert token.count(".") == 2 or token.startswith("{")

    resp = await hdab.call("GET", f"/permits/{jti}", key=keys.user)
    assert resp.status == 200
    assert (await resp.json())["token"] == token

    resp = await hdab.call(
        "POST",
        f"/permits/{jti}/amend",
        key=keys.staff,
        json={"changes": {"conditions": ["publish results"]}},
    )
    assert resp.status == 200, await resp.text()
    amended = await resp.json()
    assert amended["version"] == 2
    resp = await hdab.call("GET", f"/permits/{jti}?version=1", key=keys.staff)
    assert (await resp.json())["token"] == token

    resp = await hdab.call(
        "POST", f"/permits/{jti}/revoke", key=keys.staff, json={"reason": "breach_of_conditions"}
    )
    assert resp.status == 200, await resp.text()
    revoked = await resp.json()
    assert revoked["status"] == "revoked"

    resp = await hdab.call("GET", "/status-list")
    assert resp.status == 200
    status_token = (await resp.json())["token"]
    payload = orjson.loads(jws.JWS().deserialize(status_token) or _payload(status_token))
    assert payload["version"] == revoked["status_list_version"]
    assert payload["entries"][jti]["status"] == "revoked"

    resp = await hdab.call("GET", "/register")
    register = await resp.json()
    (entry,) = [p for p in register["permits"] if p["jti"] == jti and p["status"] == "revoked"]
    assert entry["reason"] == "breach_of_conditions"
    assert "authorised_persons" not in orjson.dumps(register).decode()

    # applied, approved, issued, statuslist, amended, statuslist, revoked, statuslist
    resp = await hdab.call("GET", f"/audit/entries?start={start}")
    types = [e["payload"]["type"] for e in (await resp.json())["entries"]]
    for t in (
        "permit.applied",
        "permit.approved",
        "permit.issued",
        "permit.amended",
        "permit.revoked",
    ):
        assert t in types

    text = await (await hdab.call("GET", "/metrics")).text()
    assert 'ehds_permit_decisions_total{event="permit.approved",reason="approved"} 1' in text
    assert (
        'ehds_permit_decisions_total{event="permit.revoked",reason="breach_of_conditions"} 1'
        in text
    )
    assert f"ehds_audit_log_size {await audit_size(hdab)}" in text


def _payload(token: str) -> bytes:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def test_refusal_with_reason_goes_to_register(hdab: Api, keys: Keys) -> None:
    app_id = await apply(hdab, keys)
    resp = await hdab.call(
        "POST",
        f"/applications/{app_id}/decision",
        key=keys.staff,
        json={"decision": "refuse", "reason": "insufficient_justification"},
    )
    assert resp.status == 200
    assert (await resp.json())["status"] == "refused"
    register = await (await hdab.call("GET", "/register")).json()
    assert register["refusals"][0]["reason"] == "insufficient_justification"
    resp = await hdab.call("GET", f"/applications/{app_id}", key=keys.user)
    assert (await resp.json())["reason"] == "insufficient_justification"


async def test_prohibited_use_is_refused_by_policy(hdab: Api, keys: Keys) -> None:
    body = application_body(keys.user, keys.person)
    body["purpose"]["declared_uses"] = ["insurance_pricing"]
    resp = await hdab.call("POST", "/applications", key=keys.user, json=body)
    app_id = (await resp.json())["id"]
    resp = await hdab.call(
        "POST", f"/applications/{app_id}/decision", key=keys.staff, json={"decision": "approve"}
    )
    assert (await resp.json())["status"] == "refused"
    assert (await resp.json())["reason"] == "prohibited_use"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/permits/permit-unknown/revoke", {"reason": "breach"}),
        ("POST", "/permits/permit-unknown/amend", {"changes": {"conditions": ["x"]}}),
        ("POST", "/applications/app-unknown/decision", {"decision": "approve"}),
        ("POST", "/applications/app-unknown/permit", {}),
    ],
)
async def test_unknown_ids_are_404_and_write_nothing(
    hdab: Api, keys: Keys, method: str, path: str, body: dict[str, Any]
) -> None:
    before = await audit_size(hdab)
    register = await (await hdab.call("GET", "/register")).json()
    await problem(await hdab.call(method, path, key=keys.staff, json=body), 404, "HDAB_NOT_FOUND")
    assert await audit_size(hdab) == before
    assert await (await hdab.call("GET", "/register")).json() == register


async def test_unknown_reads_are_404(hdab: Api, keys: Keys) -> None:
    await problem(
        await hdab.call("GET", "/permits/permit-unknown", key=keys.user), 404, "HDAB_NOT_FOUND"
    )
    await problem(
        await hdab.call("GET", "/applications/app-unknown", key=keys.staff), 404, "HDAB_NOT_FOUND"
    )


async def test_wrong_state_is_409(hdab: Api, keys: Keys) -> None:
    app_id = await apply(hdab, keys)
    before = await audit_size(hdab)
    await problem(
        await hdab.call("POST", f"/applications/{app_id}/permit", key=keys.staff, json={}),
        409,
        "HDAB_BAD_STATE",
    )
    assert await audit_size(hdab) == before


async def test_revoked_permit_cannot_be_revoked_again(hdab: Api, keys: Keys) -> None:
    jti = (await issue(hdab, keys))["jti"]
    resp = await hdab.call(
        "POST", f"/permits/{jti}/revoke", key=keys.staff, json={"reason": "breach"}
    )
    assert resp.status == 200
    before = await audit_size(hdab)
    await problem(
        await hdab.call(
            "POST", f"/permits/{jti}/revoke", key=keys.staff, json={"reason": "breach"}
        ),
        409,
        "HDAB_BAD_STATE",
    )
    assert await audit_size(hdab) == before


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "BAD_JSON"),
        (b"[1, 2]", "BAD_JSON"),
        (b"", "BAD_JSON"),
        (b'"a string"', "BAD_JSON"),
    ],
)
async def test_bad_json_is_400_and_writes_nothing(
    hdab: Api, keys: Keys, raw: bytes, code: str
) -> None:
    before = await audit_size(hdab)
    resp = await hdab.call(
        "POST",
        "/applications",
        key=keys.user,
        raw=raw,
        headers={"Content-Type": "application/json"},
    )
    await problem(resp, 400, code)
    assert await audit_size(hdab) == before


async def test_invalid_application_is_422(hdab: Api, keys: Keys) -> None:
    before = await audit_size(hdab)
    body = application_body(keys.user, keys.person, duration_days=99999)
    await problem(
        await hdab.call("POST", "/applications", key=keys.user, json=body), 422, "PERMIT_INVALID"
    )
    assert await audit_size(hdab) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"decision": "maybe"}, "VALIDATION_FAILED"),
        ({"decision": 1}, "VALIDATION_FAILED"),
        ({}, "VALIDATION_FAILED"),
        ({"decision": "refuse"}, "VALIDATION_FAILED"),
    ],
)
async def test_bad_decisions_are_422(
    hdab: Api, keys: Keys, body: dict[str, Any], code: str
) -> None:
    app_id = await apply(hdab, keys)
    before = await audit_size(hdab)
    await problem(
        await hdab.call("POST", f"/applications/{app_id}/decision", key=keys.staff, json=body),
        422,
        code,
    )
    assert await audit_size(hdab) == before


async def test_revoke_needs_a_reason_code(hdab: Api, keys: Keys) -> None:
    jti = (await issue(hdab, keys))["jti"]
    before = await audit_size(hdab)
    resp = await hdab.call(
        "POST", f"/permits/{jti}/revoke", key=keys.staff, json={"reason": "Free text with a Name"}
    )
    await problem(resp, 409, "HDAB_BAD_STATE")
    await problem(
        await hdab.call("POST", f"/permits/{jti}/revoke", key=keys.staff, json={}),
        422,
        "VALIDATION_FAILED",
    )
    await problem(
        await hdab.call("POST", f"/permits/{jti}/amend", key=keys.staff, json={"changes": {}}),
        422,
        "VALIDATION_FAILED",
    )
    await problem(
        await hdab.call(
            "POST", f"/permits/{jti}/amend", key=keys.staff, json={"changes": {"jti": "x"}}
        ),
        409,
        "HDAB_BAD_STATE",
    )
    await problem(
        await hdab.call("GET", f"/permits/{jti}?version=zero", key=keys.staff),
        422,
        "VALIDATION_FAILED",
    )
    assert await audit_size(hdab) == before


WRITE_ROUTES = [
    ("POST", "/applications"),
    ("POST", "/applications/app-x/decision"),
    ("POST", "/applications/app-x/permit"),
    ("POST", "/permits/permit-x/amend"),
    ("POST", "/permits/permit-x/revoke"),
]


@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
async def test_no_anonymous_writes(hdab: Api, method: str, path: str) -> None:
    before = await audit_size(hdab)
    await problem(await hdab.call(method, path, json={"decision": "approve"}), 401, "AUTH_MISSING")
    assert await audit_size(hdab) == before


@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES[1:])
async def test_data_users_cannot_decide(hdab: Api, keys: Keys, method: str, path: str) -> None:
    await problem(
        await hdab.call(method, path, key=keys.user, json={"decision": "approve"}),
        403,
        "AUTH_FORBIDDEN",
    )


async def test_unknown_key_and_operator_role_refused(hdab: Api, keys: Keys) -> None:
    body = application_body(keys.user, keys.person)
    await problem(
        await hdab.call("POST", "/applications", key=keys.stranger, json=body),
        401,
        "AUTH_UNKNOWN_KEY",
    )
    await problem(
        await hdab.call("POST", "/applications", key=keys.operator, json=body),
        403,
        "AUTH_FORBIDDEN",
    )


async def test_applicant_may_only_apply_for_own_org(hdab: Api, keys: Keys) -> None:
    body = application_body(keys.user, keys.person)
    body["holder_of_permit"]["id"] = "org-someone-else"
    before = await audit_size(hdab)
    await problem(
        await hdab.call("POST", "/applications", key=keys.user, json=body),
        403,
        "APPLICANT_MISMATCH",
    )
    assert await audit_size(hdab) == before


async def test_signature_bound_to_body_path_and_audience(hdab: Api, keys: Keys) -> None:
    body = application_body(keys.user, keys.person)
    before = await audit_size(hdab)
    resp = await hdab.call("POST", "/applications", key=keys.user, json=body, sign_body=b"{}")
    await problem(resp, 401, "AUTH_MISMATCH")
    resp = await hdab.call("POST", "/applications", key=keys.user, json=body, sign_path="/register")
    await problem(resp, 401, "AUTH_MISMATCH")
    resp = await hdab.call("POST", "/applications", key=keys.user, json=body, audience="hdab-other")
    await problem(resp, 401, "AUTH_MISMATCH")
    resp = await hdab.call(
        "POST", "/applications", json=body, headers={"Authorization": "Bearer abc"}
    )
    await problem(resp, 401, "AUTH_MALFORMED")
    assert await audit_size(hdab) == before


async def test_replayed_request_refused(hdab: Api, keys: Keys) -> None:
    from gateway.http.auth import sign_request

    body = orjson.dumps(application_body(keys.user, keys.person))
    header = sign_request(
        keys.user, method="POST", path="/applications", body=body, audience="hdab-test"
    )
    headers = {"Authorization": header, "Content-Type": "application/json"}
    first = await hdab.call("POST", "/applications", raw=body, headers=headers)
    assert first.status == 201
    before = await audit_size(hdab)
    await problem(
        await hdab.call("POST", "/applications", raw=body, headers=headers), 401, "AUTH_REPLAY"
    )
    assert await audit_size(hdab) == before


async def test_public_reads(hdab: Api) -> None:
    jwks = await (await hdab.call("GET", "/.well-known/jwks.json")).json()
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])
    checkpoint = await (await hdab.call("GET", "/audit/checkpoint")).json()
    cp = parse_checkpoint(checkpoint["note"])
    assert cp.size == checkpoint["size"]
    assert checkpoint["kid"] in {k["kid"] for k in jwks["keys"]}
    health = await (await hdab.call("GET", "/health")).json()
    assert health == {
        "status": "ok",
        "service": "hdab",
        "org": "hdab-test",
        "version": health["version"],
    }
    ready = await hdab.call("GET", "/ready")
    assert ready.status == 200


async def test_service_client_signs_and_raises_problems(hdab: Api, keys: Keys) -> None:
    from gateway.http.client import ServiceClient, ServiceError

    base = str(hdab.client.make_url("")).rstrip("/")
    async with ServiceClient(base, key=keys.user) as client:
        record = await client.post("/applications", application_body(keys.user, keys.person))
        assert record["status"] == "pending"
        assert client.audience == "hdab-test"
        with pytest.raises(ServiceError) as info:
            await client.post(f"/applications/{record['id']}/decision", {"decision": "approve"})
        assert (info.value.code, info.value.status) == ("AUTH_FORBIDDEN", 403)
    async with ServiceClient(base) as anonymous:
        assert "permits" in await anonymous.get("/register")


async def test_only_the_holder_or_staff_may_fetch_a_permit(hdab: Api, keys: Keys) -> None:
    from trust import generate_jwk as generate_key

    jti = (await issue(hdab, keys))["jti"]
    other = generate_key()
    # a data user of another organisation learns nothing, not even that the permit exists
    from gateway.http.middleware import VERIFIER_KEY

    verifier = hdab.client.server.app[VERIFIER_KEY]  # type: ignore[attr-defined]
    verifier.keys.add(other, org="org-other", roles=["data_user"])
    await problem(await hdab.call("GET", f"/permits/{jti}", key=other), 404, "HDAB_NOT_FOUND")
    assert (await hdab.call("GET", f"/permits/{jti}", key=keys.user)).status == 200
    assert (await hdab.call("GET", f"/permits/{jti}", key=keys.staff)).status == 200
