"""What every console handler needs, and how actions are run and audited.

Every database call runs on the service's one database thread (the same one the
API and the audit log use), so the console never races the API on SQLite. Domain
events written while a staff member acts (``permit.approved``, ``permit.issued``,
...) get ``subject.staff`` added by :class:`StaffSubjectSink`: the HDAB domain
service stays unaware of the console, and the audit log still names who acted.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from gateway.audit_wiring import AuditComponents, AuditSink
from gateway.config import ConsoleSettings
from gateway.console.store import ConsoleStore
from permits.trust_list import TrustList

T = TypeVar("T")
ACTING_STAFF: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ehds_console_staff", default=None
)


class StaffSubjectSink:
    """Adds ``subject.staff`` to every event recorded while a staff member acts."""

    def __init__(self, inner: AuditSink) -> None:
        self.inner = inner

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        staff = ACTING_STAFF.get()
        if staff is not None and "staff" not in subject:
            subject = {**subject, "staff": staff}
        self.inner.record(type, subject=subject, details=details)


@dataclass
class ConsoleState:
    hdab: Any  # permits.hdab.HdabService
    store: ConsoleStore
    audit: AuditComponents
    peers: TrustList
    settings: ConsoleSettings
    org: str
    clock: Callable[[], float] = field(default=time.time)

    def now(self) -> int:
        return int(self.clock())

    async def db(self, func: Callable[[], T]) -> T:
        """Run ``func`` on the database thread."""
        return await self.audit.view.run_sync(func)

    async def act(self, staff_id: str, func: Callable[[], T]) -> T:
        """Run a domain step on the database thread with ``staff_id`` as the acting staff."""

        def run() -> T:
            token = ACTING_STAFF.set(staff_id)
            try:
                return func()
            finally:
                ACTING_STAFF.reset(token)

        return await self.audit.view.run_sync(run)

    def record(
        self,
        type: str,
        *,
        staff: str | None,
        subject: Mapping[str, str] | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        """Write a console event (synchronous: call it inside :meth:`db`)."""
        subj = dict(subject or {})
        if staff is not None:
            subj["staff"] = staff
        self.audit.sink.record(type, subject=subj, details=dict(details or {}))

    async def audit_event(
        self,
        type: str,
        *,
        staff: str | None,
        subject: Mapping[str, str] | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        await self.db(lambda: self.record(type, staff=staff, subject=subject, details=details))


STATE_KEY = web.AppKey("ehds_console_state", ConsoleState)
#: The same state on the HDAB application (tests and the bench reach the console through it).
CONSOLE_KEY = web.AppKey("ehds_console", ConsoleState)

__all__ = ["ACTING_STAFF", "CONSOLE_KEY", "STATE_KEY", "ConsoleState", "StaffSubjectSink"]
