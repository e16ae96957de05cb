"""Sign-in and sign-out.

Every outcome is audited: ``staff.signed_in``, ``staff.signin_failed`` (with the
count of consecutive failures), ``staff.locked`` when the limit is reached, and
``staff.signed_out``. The page says the same thing for every failure, so it does
not tell which accounts exist or are locked. The password is checked off the
database thread (argon2id takes tens of milliseconds by design).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.console.html import PUBLIC, flash, text_input
from gateway.console.passwords import verify_password
from gateway.console.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_KEY,
    clear_cookie,
    form_value,
    html_response,
    new_login_token,
    public,
    see_other,
    set_cookie,
    staff_only,
    state,
)
from gateway.console.store import STAFF_ID
from gateway.permit_render import esc

FAILED = "Sign-in failed. Check your staff id and password; repeated failures lock the account."


def _login_page(request: web.Request, token: str, message: str = "") -> web.Response:
    from gateway.console.html import page

    note = ""
    if request.query.get("expired"):
        note = flash("Your session ended after a period without activity. Sign in again.", ok=False)
    body = (
        note
        + (flash(message, ok=False) if message else "")
        + '<form method="post" action="/console/login" class="card narrow">'
        + f'<input type="hidden" name="csrf" value="{esc(token)}">'
        + text_input("staff_id", "Staff id", extra=' autocomplete="username" required')
        + text_input(
            "password",
            "Password",
            kind="password",
            extra=' autocomplete="current-password" required',
        )
        + '<button type="submit">Sign in</button></form>'
    )
    response = html_response(
        page("Staff sign-in", body, PUBLIC, hdab=state(request).org),
        status=401 if message else 200,
    )
    set_cookie(request, response, LOGIN_COOKIE, token)
    return response


@public
async def get_login(request: web.Request) -> web.StreamResponse:
    if request.get(SESSION_KEY) is not None:
        return see_other("/")
    return _login_page(request, new_login_token())


@public
async def post_login(request: web.Request) -> web.StreamResponse:
    st = state(request)
    staff_id = form_value(request, "staff_id").strip()
    password = form_value(request, "password")
    known = bool(STAFF_ID.fullmatch(staff_id))
    stored = await st.db(lambda: st.store.password_hash(staff_id)) if known else None
    ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, stored, password)

    def decide() -> tuple[str, str, str] | None:
        staff = st.store.staff(staff_id) if stored is not None else None
        if staff is None:
            st.record("staff.signin_failed", staff=None, details={"reason": "unknown_account"})
            return None
        if staff.disabled or staff.locked:
            reason = "account_disabled" if staff.disabled else "account_locked"
            st.record(
                "staff.signin_failed",
                staff=staff.id,
                details={"reason": reason, "failures": staff.failures},
            )
            return None
        if not ok:
            after = st.store.record_failure(staff.id, lock_after=st.settings.lockout_failures)
            st.record(
                "staff.signin_failed",
                staff=staff.id,
                details={"reason": "bad_password", "failures": after.failures},
            )
            if after.locked:
                st.record(
                    "staff.locked",
                    staff=staff.id,
                    details={"reason": "too_many_failures", "failures": after.failures},
                )
            return None
        st.store.record_success(staff.id)
        token, csrf = st.store.open_session(staff.id, now=st.now())
        st.record("staff.signed_in", staff=staff.id, details={"role": staff.role})
        return token, csrf, staff.id

    outcome = await st.db(decide)
    if outcome is None:
        return _login_page(request, new_login_token(), FAILED)
    response = see_other("/")
    set_cookie(request, response, SESSION_COOKIE, outcome[0])
    clear_cookie(response, LOGIN_COOKIE)
    return response


@staff_only(operation="sign_out")
async def post_logout(request: web.Request) -> web.StreamResponse:
    st = state(request)
    sess = request[SESSION_KEY]

    def close() -> None:
        st.store.close_session(sess.token_hash)
        st.record("staff.signed_out", staff=sess.staff.id, details={"reason": "signed_out"})

    await st.db(close)
    response = see_other("/login")
    clear_cookie(response, SESSION_COOKIE)
    return response


__all__ = ["get_login", "post_login", "post_logout"]
