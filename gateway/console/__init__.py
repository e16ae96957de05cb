"""The web console for HDAB staff, served by ``ehds hdab serve`` under ``/console``.

Same process, same database and same audit log as the HDAB API. Case officers and
lawyers sign in with a password (argon2id), review applications, approve or refuse,
sign and co-sign permits, amend and revoke, and read and verify the audit log.
The public register (Art. 57) is readable without signing in, as a page and as JSON.

:func:`install_console` mounts it on the HDAB application; see :mod:`.web` for the
security rules every page follows.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.audit_wiring import AuditComponents
from gateway.config import ConsoleSettings
from gateway.console.security import console_guard
from gateway.console.state import CONSOLE_KEY, STATE_KEY, ConsoleState, StaffSubjectSink
from gateway.console.store import ConsoleStore
from gateway.http.middleware import OWN_ACCESS_POLICY_KEY
from permits.trust_list import TrustList


def create_console(state: ConsoleState, *, max_body: int = 1_048_576) -> web.Application:
    """The console as an aiohttp sub-application (mounted at ``/console``)."""
    from gateway.console import (
        audit_pages,
        auth_pages,
        permit_pages,
        public_pages,
        review_pages,
        signing_pages,
    )

    app = web.Application(middlewares=[console_guard], client_max_size=max_body)
    app[STATE_KEY] = state
    app[OWN_ACCESS_POLICY_KEY] = "console sessions and CSRF (gateway.console.security)"
    app.router.add_get("/login", auth_pages.get_login)
    app.router.add_post("/login", auth_pages.post_login)
    app.router.add_post("/logout", auth_pages.post_logout)
    pages = review_pages.routes() + signing_pages.routes() + permit_pages.routes()
    for method, path, handler in pages + public_pages.routes() + audit_pages.routes():
        app.router.add_route(method, path, handler)
    return app


def install_console(
    app: web.Application,
    *,
    hdab: object,
    audit: AuditComponents,
    settings: ConsoleSettings,
    org: str,
    clock: Callable[[], float] | None = None,
) -> ConsoleState:
    """Mount the console on the HDAB application and tag the HDAB's audit events with staff ids."""
    from permits.hdab_queries import ensure_indexes

    engine = hdab.engine  # type: ignore[attr-defined]
    ensure_indexes(engine)
    hdab.sink = StaffSubjectSink(hdab.sink)  # type: ignore[attr-defined]
    peers = TrustList.from_file(settings.peer_keys) if settings.peer_keys else TrustList()
    state = ConsoleState(hdab, ConsoleStore(engine), audit, peers, settings, org)
    if clock is not None:
        state.clock = clock
    app[CONSOLE_KEY] = state
    app.add_subapp("/console", create_console(state, max_body=app._client_max_size))
    return state


__all__ = ["CONSOLE_KEY", "ConsoleState", "create_console", "install_console"]
