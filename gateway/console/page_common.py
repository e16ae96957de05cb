"""What the staff pages share: reason lists, the flash after a POST, loading an application.

GET handlers only read; each POST changes one thing through the HDAB domain service
(which writes the audit event inside its transaction, tagged with the acting staff
member) and answers 303 to the page that shows the result.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.console.html import (
    flash,
    table,
)
from gateway.console.security import (
    state,
)
from gateway.errors import NotFoundError
from gateway.permit_render import esc, iso_time
from permits import hdab_queries as q

PER_PAGE = 50
DAY = 86400
REFUSE_REASONS = (
    ("insufficient_justification", "insufficient justification (Art. 67(2))"),
    ("not_proportionate", "data requested not proportionate to the purpose"),
    ("prohibited_use", "prohibited use (Art. 54)"),
    ("public_sector_only", "purpose reserved to public sector bodies (Art. 53(2))"),
    ("data_not_available", "data not available from the data holders"),
    ("incomplete_application", "application incomplete"),
)
REVOKE_REASONS = (
    ("breach_of_conditions", "breach of the permit's conditions (Art. 63)"),
    ("unlawful_processing", "unlawful processing"),
    ("security_incident", "security incident at the holder"),
    ("holder_request", "requested by the holder of the permit"),
    ("error_in_permit", "the permit was issued in error"),
)
CODE = re.compile(r"^[a-z0-9_.:-]{1,64}$")
ID = r"{id:[A-Za-z0-9._:@-]{1,128}}"


def done_flash(request: web.Request) -> str:
    done = request.query.get("done", "")
    messages = {
        "approved": "Application approved.",
        "refused": "Application refused.",
        "issued": "Permit signed and issued; the status list now carries it.",
        "signed": "Signed. The permit waits for the co-issuers' signatures.",
        "cosigned": "Co-signature added.",
        "revoked": "Permit revoked; the new status list carries the revocation.",
        "amended": "Permit amended: a new version is signed.",
        "spec": "Feature specification attached (its hash matches the application).",
    }
    return flash(messages[done]) if done in messages else ""


def app_title(body: dict[str, Any]) -> str:
    """The application's title: the first line of the research question (applicant's words)."""
    text = str((body.get("purpose") or {}).get("description", "")).strip().splitlines()
    first = text[0] if text else "(no description)"
    return first[:120] + ("…" if len(first) > 120 else "")


async def load_application(request: web.Request) -> q.ApplicationSummary:
    st = state(request)
    app_id = request.match_info["id"]
    found = await st.db(lambda: q.get_application(st.hdab.engine, app_id))
    if found is None:
        raise NotFoundError(f"application {app_id} not found", code="HDAB_NOT_FOUND")
    return found


def history_table(a: q.ApplicationSummary, decisions: list[Any]) -> str:
    rows = [["received", "applicant", esc(iso_time(a.created_at)), ""]]
    rows += [
        [esc(d.action), esc(d.staff_id), esc(iso_time(d.at)), esc(d.reason or "")]
        for d in decisions
    ]
    if a.decided_at and not any(d.action in ("approved", "refused") for d in decisions):
        rows.append([esc(a.status), "HDAB API", esc(iso_time(a.decided_at)), esc(a.reason or "")])
    return table(["decision", "by", "when", "reason"], rows)


__all__ = [
    "CODE",
    "DAY",
    "ID",
    "PER_PAGE",
    "REFUSE_REASONS",
    "REVOKE_REASONS",
    "app_title",
    "done_flash",
    "history_table",
    "load_application",
]
