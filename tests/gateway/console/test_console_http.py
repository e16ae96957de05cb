"""The staff console over real HTTP: sign-in, CSRF, escaping, lock-out, roles, four-eyes, audit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from permits.signing import cosign_permit
from tests.gateway.conftest import application_body
from tests.gateway.console.conftest import PASSWORD, Env
from trust import parse_jws


def cookie_header(resp: Any, name: str) -> str:
    for value in resp.headers.getall("Set-Cookie", []):
        if value.startswith(name + "="):
            return str(value)
    raise AssertionError(f"no Set-Cookie for {name}")


async def test_sign_in_sets_a_strict_httponly_session_and_security_headers(
    env: Env, staff_session: Any
) -> None:
    s = await staff_session()
    page = await s.client.get("/console/")
    assert page.status == 200 and "/console/login" in str(page.url)  # redirected to sign in
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["Referrer-Policy"] == "no-referrer"
    resp = await s.login("rita")
    assert resp.status == 303
    cookie = cookie_header(resp, "ehds_console")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; set when the request came over TLS
    dash = await s.client.get("/console/")
    text = await dash.text()
    assert dash.status == 200 and "rita" in text and "Applications by state" in text
    assert "<script>" not in text and " style=" not in text  # no inline script or style
    (event,) = await env.events("staff.signed_in")
    assert event["subject"] == {"staff": "rita"} and event["details"] == {"role": "reviewer"}


async def test_a_form_without_its_csrf_token_is_refused_with_403(
    env: Env, staff_session: Any
) -> None:
    app_id = await env.apply()
    rita = await staff_session("rita")
    resp = await rita.post(f"/console/applications/{app_id}/approve", csrf=False)
    assert resp.status == 403
    resp = await rita.post(
        f"/console/applications/{app_id}/approve", {"csrf": "forged"}, csrf=False
    )
    assert resp.status == 403
    page = await (await rita.client.get(f"/console/applications/{app_id}")).text()
    assert "pending" in page  # nothing changed
    refused = await env.events("staff.refused")
    assert refused[-1]["subject"] == {"staff": "rita"}
    assert refused[-1]["details"] == {"reason": "csrf_missing", "operation": "approve"}
    ok = await rita.post(f"/console/applications/{app_id}/approve")
    assert ok.status == 303


async def test_no_state_change_on_get(env: Env, staff_session: Any) -> None:
    app_id = await env.apply()
    rita = await staff_session("rita")
    resp = await rita.client.get(f"/console/applications/{app_id}/approve")
    assert resp.status == 405
    resp = await rita.client.get("/console/logout")
    assert resp.status == 405
    assert not await env.events("permit.approved")


async def test_script_in_an_application_renders_as_text(env: Env, staff_session: Any) -> None:
    body = {
        "codes": ["e.ii"],
        "description": "<script>alert('x')</script> readmission <b>risk</b>",
        "declared_uses": ["model_training"],
    }
    holder = {
        "id": "org-research-1",
        "name": '"><img src=x onerror=alert(1)>',
        "country": "FI",
        "sector": "private",
        "kid": __import__("trust").thumbprint(env.keys.user),
    }
    app_id = await env.apply(purpose=body, holder_of_permit=holder)
    rita = await staff_session("rita")
    for path in (f"/console/applications/{app_id}", "/console/applications"):
        text = await (await rita.client.get(path)).text()
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
        assert "<script>alert" not in text and "<b>risk</b>" not in text
    detail = await (await rita.client.get(f"/console/applications/{app_id}")).text()
    assert "<img src=x" not in detail and "&lt;img src=x onerror=alert(1)&gt;" in detail


async def test_five_wrong_passwords_lock_the_account(env: Env, staff_session: Any) -> None:
    s = await staff_session()
    for _ in range(5):
        resp = await s.login("sam", "wrong password, sorry")
        assert resp.status == 401
    resp = await s.login("sam", PASSWORD)
    assert resp.status == 401  # locked: the right password no longer opens it
    failed = await env.events("staff.signin_failed")
    assert [e["details"]["reason"] for e in failed] == ["bad_password"] * 5 + ["account_locked"]
    assert [e["details"]["failures"] for e in failed[:5]] == [1, 2, 3, 4, 5]
    (locked,) = await env.events("staff.locked")
    assert locked["subject"] == {"staff": "sam"}
    # an unknown account fails the same way, and its typed name is not in the log
    resp = await s.login("nobody-here", PASSWORD)
    assert resp.status == 401
    assert (await env.events("staff.signin_failed"))[-1]["subject"] == {}
    # reset (what `ehds hdab staff reset` does) unlocks
    env.state.store.reset("sam", env.state.store.password_hash("rita") or "")
    assert (await s.login("sam", PASSWORD)).status == 303


async def test_a_reviewer_cannot_sign(env: Env, staff_session: Any) -> None:
    app_id = await env.apply()
    rita = await staff_session("rita")
    assert (await rita.post(f"/console/applications/{app_id}/approve")).status == 303
    resp = await rita.post(f"/console/applications/{app_id}/sign")
    assert resp.status == 403
    assert not await env.events("permit.issued")
    refused = await env.events("staff.refused")
    assert refused[-1]["details"] == {"reason": "role_missing", "operation": "sign"}
    approved = await env.events("permit.approved")
    assert approved[-1]["subject"] == {"application": app_id, "staff": "rita"}


async def test_four_eyes_the_approver_cannot_sign_a_second_person_can(
    env: Env, staff_session: Any
) -> None:
    app_id = await env.apply()
    ada = await staff_session("ada")  # admin: may approve and sign, but not both
    assert (await ada.post(f"/console/applications/{app_id}/approve")).status == 303
    resp = await ada.post(f"/console/applications/{app_id}/sign")
    assert resp.status == 403
    assert "four-eyes" in await resp.text()
    assert (await env.events("staff.refused"))[-1]["details"]["reason"] == "four_eyes"
    sam = await staff_session("sam")
    resp = await sam.post(f"/console/applications/{app_id}/sign")
    assert resp.status == 303 and "/console/permits/permit-" in resp.headers["Location"]
    (issued,) = await env.events("permit.issued")
    assert issued["subject"]["staff"] == "sam" and issued["subject"]["application"] == app_id


async def test_four_eyes_can_be_switched_off(env: Env, staff_session: Any) -> None:
    from dataclasses import replace

    env.state.settings = replace(env.state.settings, four_eyes=False)
    app_id = await env.apply()
    ada = await staff_session("ada")
    assert (await ada.post(f"/console/applications/{app_id}/approve")).status == 303
    assert (await ada.post(f"/console/applications/{app_id}/sign")).status == 303


async def test_cross_border_waits_for_the_cosigner(env: Env, staff_session: Any) -> None:
    app_id = await env.apply_cross_border()
    rita, sam = await staff_session("rita"), await staff_session("sam")
    assert (await rita.post(f"/console/applications/{app_id}/approve")).status == 303
    resp = await sam.post(f"/console/applications/{app_id}/sign")
    assert resp.status == 303 and resp.headers["Location"].endswith("/sign?done=signed")
    page = await (await sam.client.get(f"/console/applications/{app_id}/sign")).text()
    assert "Waiting for: <strong>hdab-se</strong>" in page
    assert not await env.events("permit.issued")
    register = await (await env.client.get("/console/register.json")).json()
    assert register["permits"] == []  # not issued while a co-signature is missing
    draft = await (await sam.client.get(f"/console/applications/{app_id}/draft.jws")).text()
    # a signature by a key that is not the co-issuer's is refused
    from trust import generate_jwk as generate_key

    stranger = cosign_permit(draft, generate_key())
    resp = await sam.post(f"/console/applications/{app_id}/cosign", {"token": stranger})
    assert resp.status == 422 and "not a co-issuer" in await resp.text()
    # the co-issuer signs with `ehds permit cosign` in its own system
    from gateway.cli import main

    (env.tmp / "draft.json").write_text(draft)
    (env.tmp / "peer.jwk").write_text(env.peer.export(private_key=True))
    out = env.tmp / "cosigned.json"
    assert (
        main(
            [
                "permit",
                "cosign",
                str(env.tmp / "draft.json"),
                "--key",
                str(env.tmp / "peer.jwk"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cosigned = out.read_text()
    resp = await sam.post(f"/console/applications/{app_id}/cosign", {"token": cosigned})
    assert resp.status == 303 and "/console/permits/" in resp.headers["Location"]
    (issued,) = await env.events("permit.issued")
    assert issued["details"]["signatures"] == 2 and issued["subject"]["staff"] == "sam"
    jti = issued["subject"]["permit"]
    token = (await (await env.api.call("GET", f"/permits/{jti}", key=env.keys.staff)).json())[
        "token"
    ]
    assert len(parse_jws(token).signatures) == 2
    assert [e["type"] for e in await env.events("permit.signed")] == ["permit.signed"]


async def test_revoke_with_reason_and_the_public_register(env: Env, staff_session: Any) -> None:
    app_id = await env.apply()
    rita, sam = await staff_session("rita"), await staff_session("sam")
    await rita.post(f"/console/applications/{app_id}/approve")
    resp = await sam.post(f"/console/applications/{app_id}/sign")
    jti = resp.headers["Location"].split("/permits/")[1].split("?")[0]
    resp = await sam.post(f"/console/permits/{jti}/revoke", {"reason": "breach_of_conditions"})
    assert resp.status == 303
    (revoked,) = await env.events("permit.revoked")
    assert revoked["subject"] == {"permit": jti, "staff": "sam"}
    assert revoked["details"]["reason"] == "breach_of_conditions"
    # public, without signing in
    html = await (await env.client.get("/console/register")).text()
    assert jti in html and "revoked" in html and "Art. 53(1)(e)(ii)" in html
    data = orjson.loads(await (await env.client.get("/console/register.json")).read())
    (entry,) = data["permits"]
    assert entry["permit"] == jti and entry["status"] == "revoked"
    assert entry["valid_from"].endswith("Z") and entry["data"][0]["datasets"] == ["ehr-2020-2024"]
    assert "person-7f3a" not in str(data)  # authorised persons are people: not published
    other = await env.apply()
    await rita.post(f"/console/applications/{other}/refuse", {"reason": "not_proportionate"})
    data = orjson.loads(await (await env.client.get("/console/register.json")).read())
    (refusal,) = data["refusals"]
    assert refusal["application"] == other and refusal["reason"] == "not_proportionate"
    assert refusal["applicant"] == "org-research-1" and refusal["decided"].endswith("Z")


async def test_amend_signs_a_new_version(env: Env, staff_session: Any) -> None:
    app_id = await env.apply()
    rita, sam = await staff_session("rita"), await staff_session("sam")
    await rita.post(f"/console/applications/{app_id}/approve")
    jti = (
        (await sam.post(f"/console/applications/{app_id}/sign"))
        .headers["Location"]
        .split("/")[-1]
        .split("?")[0]
    )
    resp = await sam.post(
        f"/console/permits/{jti}/amend",
        {"valid_until": "2030-06-30", "conditions": "publish results"},
    )
    assert resp.status == 303, await resp.text()
    page = await (await sam.client.get(f"/console/permits/{jti}")).text()
    assert "2030-06-30T23:59:59Z" in page and "publish results" in page and "superseded" in page


async def test_audit_explorer_filters_proves_and_verifies(env: Env, staff_session: Any) -> None:
    app_id = await env.apply()
    rita = await staff_session("rita")
    await rita.post(f"/console/applications/{app_id}/approve")
    page = await (await rita.client.get("/console/audit?key=staff&value=rita")).text()
    assert "<code>permit.approved</code>" in page and "<code>permit.applied</code>" not in page
    approved = [e for e in await env.events("permit.approved")]
    assert approved
    size = await env.state.audit.view.tree_size()
    entry = await (await rita.client.get(f"/console/audit/{size - 1}")).text()
    assert "Inclusion proof verifies" in entry
    verify = await (await rita.client.get("/console/audit/verify")).text()
    assert 'id="verify-result" class="ok">OK' in verify


async def test_idle_session_ends(env: Env, staff_session: Any) -> None:
    rita = await staff_session("rita")
    assert (await rita.client.get("/console/", allow_redirects=False)).status == 200
    later = env.state.now() + env.state.settings.idle_minutes * 60 + 5
    env.state.clock = lambda: float(later)
    resp = await rita.client.get("/console/", allow_redirects=False)
    assert resp.status == 303 and "expired=1" in resp.headers["Location"]
    (event,) = await env.events("staff.signed_out")
    assert event["subject"] == {"staff": "rita"} and event["details"] == {"reason": "idle_timeout"}


@pytest.mark.parametrize("path", ["/console/register", "/console/register.json", "/console/login"])
async def test_public_pages_need_no_sign_in(env: Env, path: str) -> None:
    resp = await env.client.get(path, allow_redirects=False)
    assert resp.status == 200
    assert resp.headers["X-Frame-Options"] == "DENY"


async def test_the_feature_specification_is_attached_checked_and_shown(
    env: Env, staff_session: Any
) -> None:
    from pathlib import Path

    from fhir_adapters.features import FeatureSpec

    path = Path(__file__).resolve().parents[3] / "docs" / "examples" / "diabetes.spec.json"
    text = path.read_text(encoding="utf-8")
    pinned = FeatureSpec.from_json(text).canonical_hash()
    body = application_body(env.keys.user, env.keys.person)
    body["data"][0]["feature_spec_hash"] = pinned
    app_id = await env.apply(data=body["data"])
    rita = await staff_session("rita")
    page = await (await rita.client.get(f"/console/applications/{app_id}")).text()
    assert "Not on file" in page
    wrong = await rita.post(
        f"/console/applications/{app_id}/spec",
        {"hash": pinned, "spec": text.replace("1.0", "1.1", 1)},
    )
    assert wrong.status == 422
    refused = (await env.events("staff.refused"))[-1]
    assert refused["details"] == {
        "reason": "feature_spec_hash_mismatch",
        "operation": "attach_spec",
    }
    ok = await rita.post(f"/console/applications/{app_id}/spec", {"hash": pinned, "spec": text})
    assert ok.status == 303
    (attached,) = await env.events("application.spec_attached")
    assert attached["subject"] == {"application": app_id, "staff": "rita"}
    assert attached["details"] == {"spec_hash": pinned}
    page = await (await rita.client.get(f"/console/applications/{app_id}")).text()
    spec = FeatureSpec.from_json(text)
    for feature in spec.features:
        assert f"<td>{feature.name}</td>" in page
    assert "Body mass index" in page  # a code's display text
    assert "Not on file" not in page and "<th>window</th>" in page and "<th>unit</th>" in page


async def test_verify_the_log_reports_a_tampered_entry(env: Env, staff_session: Any) -> None:
    import sqlite3

    await env.apply()
    rita = await staff_session("rita")
    conn = sqlite3.connect(env.tmp / "hdab-audit.sqlite")
    (leaf,) = conn.execute("SELECT leaf FROM audit_entry WHERE idx = 1").fetchone()
    tampered = bytearray(leaf)
    pos = tampered.index(b".") + 20  # a byte inside the signed payload
    tampered[pos] = ord("B") if tampered[pos] != ord("B") else ord("C")
    conn.execute("UPDATE audit_entry SET leaf = ? WHERE idx = 1", (bytes(tampered),))
    conn.commit()
    conn.close()
    page = await (await rita.client.get("/console/audit/verify")).text()
    assert 'id="verify-result" class="bad">FAILED' in page and "at entry 1" in page


def test_the_session_cookie_is_secure_when_the_request_came_over_tls() -> None:
    import ssl

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from gateway.console.security import SESSION_COOKIE, set_cookie

    for context, secure in ((ssl.create_default_context(), True), (None, False)):
        request = make_mocked_request("POST", "/console/login", sslcontext=context)
        response = web.Response()
        set_cookie(request, response, SESSION_COOKIE, "token")
        morsel = response.cookies[SESSION_COOKIE]
        assert bool(morsel["secure"]) is secure
        assert (
            morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/console"
        )
