"""Permits: the list, one permit (readable, versions, decisions), amend and revoke with a reason."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.console.html import (
    Viewer,
    badge,
    form,
    link,
    pager,
    select,
    table,
    text_input,
)
from gateway.console.page_common import (
    CODE,
    ID,
    PER_PAGE,
    REVOKE_REASONS,
    done_flash,
)
from gateway.console.security import (
    current_staff,
    form_value,
    page_param,
    render,
    see_other,
    staff_only,
    state,
    viewer,
)
from gateway.errors import NotFoundError, ValidationError
from gateway.permit_render import esc, iso_time, permit_html, purposes_in_words
from permits import hdab_queries as q
from trust import parse_jws


# -------------------------------------------------------------------------------- permits
async def _versions(request: web.Request, jti: str) -> list[q.PermitSummary]:
    """Every version of the permit, newest first; 404 when there is none."""
    st = state(request)
    versions = await st.db(lambda: q.permit_versions(st.hdab.engine, jti))
    if not versions:
        raise NotFoundError(f"permit {jti} not found", code="HDAB_NOT_FOUND")
    return versions


@staff_only(operation="permits")
async def permits_list(request: web.Request) -> web.StreamResponse:
    st = state(request)
    page_no = page_param(request)
    rows, total = await st.db(
        lambda: q.list_permits(st.hdab.engine, offset=page_no * PER_PAGE, limit=PER_PAGE)
    )
    listing = table(
        ["permit", "version", "holder", "purpose", "status", "valid from", "valid until"],
        [
            [
                link(f"/permits/{p.jti}", p.jti),
                str(p.version),
                esc(p.holder),
                esc("; ".join(purposes_in_words(p.purposes))),
                badge(p.status),
                esc(iso_time(p.nbf)),
                esc(iso_time(p.exp)),
            ]
            for p in rows
        ],
    )
    return render(request, "Permits", listing + pager("/permits", page_no, total, PER_PAGE))


@staff_only(operation="permit")
async def permit_page(request: web.Request) -> web.StreamResponse:
    st = state(request)
    v: Viewer = viewer(request)
    jti = request.match_info["id"]
    versions = await _versions(request, jti)
    current = versions[0]
    decisions = await st.db(lambda: st.store.decisions(application_id=current.application_id))
    payload = orjson.loads(parse_jws(current.token).payload)
    status_line = f"<p>{badge(current.status)} version {current.version}"
    if current.status == "revoked":
        status_line += (
            f", revoked {esc(iso_time(current.revoked_at))} for {esc(current.reason or '')}"
        )
    status_line += f" · permit hash <code>{esc(current.permit_hash)}</code></p>"
    history = table(
        ["version", "status", "signed", "valid from", "valid until", "signatures"],
        [
            [
                str(p.version),
                badge(p.status),
                esc(iso_time(p.iat)),
                esc(iso_time(p.nbf)),
                esc(iso_time(p.exp)),
                str(p.signatures),
            ]
            for p in versions
        ],
    )
    parts = [
        done_flash(request),
        status_line,
        f'<section class="card"><h2>The permit</h2>{permit_html(payload)}</section>',
        f'<section class="card"><h2>Versions</h2>{history}</section>',
        '<section class="card"><h2>Decisions</h2>'
        + table(
            ["decision", "by", "when", "reason"],
            [
                [esc(d.action), esc(d.staff_id), esc(iso_time(d.at)), esc(d.reason or "")]
                for d in decisions
            ],
        )
        + link(f"/applications/{current.application_id}", "the application")
        + "</section>",
    ]
    if current.status == "valid" and v.role in ("signer", "admin"):
        exp_day = datetime.fromtimestamp(current.exp, UTC).date().isoformat()
        parts.append(
            '<section class="card"><h2>Amend</h2>'
            + form(
                f"/permits/{jti}/amend",
                v,
                text_input("valid_until", "Valid until (YYYY-MM-DD)", value=exp_day, kind="date")
                + '<label for="f-conditions">Further conditions (one per line)</label>'
                + f'<textarea name="conditions" id="f-conditions" rows="3">{esc(chr(10).join(payload.get("conditions", [])))}</textarea>',
                "Sign the amended version",
            )
            + "</section>"
            + '<section class="card danger"><h2>Revoke</h2>'
            + form(
                f"/permits/{jti}/revoke",
                v,
                select("reason", REVOKE_REASONS, label="Reason"),
                "Revoke the permit",
                confirm="Revoke this permit? Data holders refuse it from the next status list on.",
            )
            + "</section>"
        )
    return render(request, f"Permit {jti}", "".join(parts))


@staff_only("signer", operation="revoke")
async def post_revoke(request: web.Request) -> web.StreamResponse:
    st = state(request)
    staff = current_staff(request)
    jti = request.match_info["id"]
    reason = form_value(request, "reason")
    if not CODE.fullmatch(reason):
        raise ValidationError("choose a reason", code="REASON_INVALID")
    versions = await _versions(request, jti)

    def run() -> None:
        st.hdab.revoke(jti, reason)
        st.store.add_decision(
            versions[0].application_id, "revoked", staff.id, now=st.now(), jti=jti, reason=reason
        )

    await st.act(staff.id, run)
    return see_other(f"/permits/{jti}?done=revoked")


@staff_only("signer", operation="amend")
async def post_amend(request: web.Request) -> web.StreamResponse:
    st = state(request)
    staff = current_staff(request)
    jti = request.match_info["id"]
    versions = await _versions(request, jti)
    current = versions[0]
    payload = orjson.loads(parse_jws(current.token).payload)
    changes: dict[str, Any] = {}
    raw = form_value(request, "valid_until").strip()
    if raw:
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise ValidationError(
                "valid until must be a date YYYY-MM-DD", code="PARAMETER_INVALID"
            ) from None
        exp = int(datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC).timestamp())
        if exp != payload["exp"]:
            changes["exp"] = exp
    conditions = [c.strip() for c in form_value(request, "conditions").splitlines() if c.strip()]
    if conditions != payload.get("conditions", []):
        changes["conditions"] = conditions
    if not changes:
        raise ValidationError("nothing changed", code="NOTHING_TO_AMEND")
    if payload.get("cross_border"):
        raise ValidationError(
            "a cross-border permit is amended with every co-issuer's signature: use `ehds permit amend`",
            code="HDAB_BAD_STATE",
        )

    def run() -> None:
        st.hdab.amend(jti, changes)
        st.store.add_decision(current.application_id, "amended", staff.id, now=st.now(), jti=jti)

    await st.act(staff.id, run)
    return see_other(f"/permits/{jti}?done=amended")


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/permits", permits_list),
        ("GET", f"/permits/{ID}", permit_page),
        ("POST", f"/permits/{ID}/revoke", post_revoke),
        ("POST", f"/permits/{ID}/amend", post_amend),
    ]


__all__ = ["routes"]
