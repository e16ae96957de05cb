"""The console's one middleware: security headers, sessions, CSRF, roles, HTML errors.

Each handler declares its access policy with :func:`public` or :func:`staff_only`;
a handler without one is refused (fail closed). Every POST must carry the CSRF
token of the session (or, for the sign-in form, the one in its short-lived
cookie); GET handlers never change state. A refusal a staff member meets (CSRF,
role, four-eyes) is written to the audit log as ``staff.refused``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.console.html import PREFIX, Viewer, flash, link, page
from gateway.console.state import STATE_KEY, ConsoleState
from gateway.console.store import Staff, StaffSession
from gateway.errors import GatewayError
from gateway.http.problem import status_for_code

LOG = logging.getLogger("ehds.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE = "ehds_console"
LOGIN_COOKIE = "ehds_console_login"
SESSION_KEY = web.RequestKey("ehds_console_session", StaffSession)
FORM_KEY = web.RequestKey("ehds_console_form", dict)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class ConsoleRefusal(GatewayError):
    """A staff member may not do this (role, four-eyes, CSRF); audited as ``staff.refused``."""

    code = "CONSOLE_FORBIDDEN"
    status = 403

    def __init__(self, message: str, *, reason: str, operation: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.operation = operation


def public(handler: Handler) -> Handler:
    handler.console_policy = "public"  # type: ignore[attr-defined]
    return handler


def staff_only(*roles: str, operation: str = "") -> Callable[[Handler], Handler]:
    """Signed-in staff only; with ``roles``, one of them (admins may everything)."""

    def deco(handler: Handler) -> Handler:
        handler.console_policy = frozenset(roles)  # type: ignore[attr-defined]
        handler.console_operation = operation or handler.__name__  # type: ignore[attr-defined]
        return handler

    return deco


def state(request: web.Request) -> ConsoleState:
    return request.app[STATE_KEY]


def viewer(request: web.Request) -> Viewer:
    sess = request.get(SESSION_KEY)
    if sess is None:
        return Viewer()
    return Viewer(sess.staff.id, sess.staff.role, sess.csrf)


def current_staff(request: web.Request) -> Staff:
    return request[SESSION_KEY].staff


def form_value(request: web.Request, name: str, default: str = "") -> str:
    value = request.get(FORM_KEY, {}).get(name, default)
    return value if isinstance(value, str) else default


def page_param(request: web.Request) -> int:
    raw = request.query.get("page", "0")
    if not raw.isdigit() or len(raw) > 6:
        raise GatewayError("page must be a small non-negative integer", code="PARAMETER_INVALID")
    return int(raw)


def html_response(body: str, *, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def render(request: web.Request, title: str, body: str, *, status: int = 200) -> web.Response:
    return html_response(page(title, body, viewer(request), hdab=state(request).org), status=status)


def see_other(path: str) -> web.Response:
    """Post/Redirect/Get: a POST answers with 303 to the page that shows its result."""
    return web.Response(status=303, headers={"Location": PREFIX + path})


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        secure=request.secure,
        samesite="Strict",
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=PREFIX)


async def _load_session(request: web.Request, st: ConsoleState) -> str:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return "no_session"
    idle = st.settings.idle_minutes * 60
    sess, why, staff_id = await st.db(lambda: st.store.session(token, now=st.now(), idle=idle))
    if sess is not None:
        request[SESSION_KEY] = sess
    elif why == "idle_timeout":
        await st.audit_event("staff.signed_out", staff=staff_id, details={"reason": "idle_timeout"})
    return why


def _check_csrf(request: web.Request, sent: str) -> bool:
    sess = request.get(SESSION_KEY)
    expected = sess.csrf if sess is not None else request.cookies.get(LOGIN_COOKIE, "")
    return bool(sent) and bool(expected) and hmac.compare_digest(sent, expected)


def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    back = (
        link("/", "Back to the dashboard")
        if request.get(SESSION_KEY)
        else link("/login", "Sign in")
    )
    return render(
        request, f"Not done ({status})", flash(message, ok=False) + f"<p>{back}</p>", status=status
    )


async def _audit_refused_post(request: web.Request, code: str) -> None:
    """A staff member's form that the HDAB refused (bad state, policy, bad input) is audited."""
    sess = request.get(SESSION_KEY)
    if request.method != "POST" or sess is None:
        return
    operation = getattr(request.match_info.handler, "console_operation", "form")
    with contextlib.suppress(Exception):  # the refusal is shown even if the log is unavailable
        await state(request).audit_event(
            "staff.refused",
            staff=sess.staff.id,
            details={"reason": code.lower()[:64], "operation": operation},
        )


@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status in (301, 302, 303, 307, 308):
            response = web.Response(status=exc.status, headers={"Location": exc.location})  # type: ignore[attr-defined]
        else:
            response = _error_page(request, exc.status, exc.reason)
    except ConsoleRefusal as exc:
        st = state(request)
        staff = request.get(SESSION_KEY)
        await st.audit_event(
            "staff.refused",
            staff=staff.staff.id if staff else None,
            details={"reason": exc.reason, "operation": exc.operation},
        )
        response = _error_page(request, 403, str(exc))
    except GatewayError as exc:
        await _audit_refused_post(request, exc.code)
        response = _error_page(request, exc.status, str(exc))
    except Exception as exc:
        code = getattr(exc, "code", None)
        if isinstance(code, str) and code.isupper():
            declared = getattr(exc, "http_status", None)
            status = declared if isinstance(declared, int) else status_for_code(code)
            message = f"[{code}] {exc}" if status < 500 else "internal error (see the service log)"
            await _audit_refused_post(request, code)
            response = _error_page(request, status, message)
        else:
            LOG.error("console error %s", type(exc).__name__)
            response = _error_page(request, 500, "internal error (see the service log)")
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception
    st = state(request)
    route_handler: Any = request.match_info.handler
    policy = getattr(route_handler, "console_policy", None)
    if policy is None:  # a route without a declared policy is refused, never served
        raise GatewayError("route has no access policy", code="ROUTE_UNDECLARED", status=500)
    why = await _load_session(request, st)
    if request.method == "POST":
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            raise GatewayError("forms only", code="UNSUPPORTED_MEDIA_TYPE", status=415)
        data = await request.post()
        request[FORM_KEY] = {k: v for k, v in data.items() if isinstance(v, str)}
        if not _check_csrf(request, form_value(request, "csrf")):
            raise ConsoleRefusal(
                "the form's security token is missing or stale: reload the page and try again",
                reason="csrf_missing",
                operation=getattr(route_handler, "console_operation", "form"),
            )
    elif request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    if policy != "public":
        sess = request.get(SESSION_KEY)
        if sess is None:
            if request.method == "POST":
                raise GatewayError("sign in first", code="CONSOLE_SIGN_IN", status=401)
            target = "/login" + ("?expired=1" if why == "idle_timeout" else "")
            raise web.HTTPSeeOther(PREFIX + target)
        if policy and not sess.staff.may(*policy):
            raise ConsoleRefusal(
                f"your role ({sess.staff.role}) may not do this; it needs "
                + " or ".join(sorted(policy)),
                reason="role_missing",
                operation=getattr(route_handler, "console_operation", "page"),
            )
    return await handler(request)


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


__all__ = [
    "CSP",
    "LOGIN_COOKIE",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "SESSION_KEY",
    "ConsoleRefusal",
    "clear_cookie",
    "console_guard",
    "current_staff",
    "form_value",
    "html_response",
    "new_login_token",
    "page_param",
    "public",
    "render",
    "see_other",
    "set_cookie",
    "staff_only",
    "state",
    "viewer",
]
