"""Review: the dashboard, the list of applications, one application; approve, refuse, attach its feature specification."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.console.audit_check import newest_cosignatures
from gateway.console.html import (
    badge,
    form,
    link,
    pager,
    select,
    table,
)
from gateway.console.page_common import (
    CODE,
    DAY,
    ID,
    PER_PAGE,
    REFUSE_REASONS,
    app_title,
    done_flash,
    history_table,
    load_application,
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
from gateway.console.spec_view import parse_spec, spec_table
from gateway.errors import ValidationError
from gateway.permit_render import esc, iso_time, permit_html
from permits import hdab_queries as q


# ------------------------------------------------------------------------------ dashboard
@staff_only(operation="dashboard")
async def dashboard(request: web.Request) -> web.StreamResponse:
    st = state(request)
    now = st.now()
    counts = await st.db(lambda: q.application_counts(st.hdab.engine))
    expiring = await st.db(lambda: q.expiring_permits(st.hdab.engine, now=now, within=30 * DAY))
    status = await st.db(lambda: q.latest_status_list(st.hdab.engine))
    checkpoint = await st.audit.view.checkpoint()
    states = table(
        ["state", "applications"],
        [
            [link(f"/applications?state={s}", s), f"<span class=num>{n}</span>"]
            for s, n in counts.items()
        ],
    )
    soon = (
        table(
            ["permit", "holder", "valid until"],
            [
                [link(f"/permits/{p.jti}", p.jti), esc(p.holder), esc(iso_time(p.exp))]
                for p in expiring
            ],
        )
        if expiring
        else "<p>None in the next 30 days.</p>"
    )
    if status is None:
        sl = "<p class=bad>No status list published yet.</p>"
    else:
        version, iat, revoked = status
        sl = (
            f"<p>Version <strong>{version}</strong>, signed {esc(iso_time(iat))} "
            f"({max(0, now - iat)} s ago), {revoked} revoked.</p>"
        )
    cosigs = await st.db(lambda: newest_cosignatures(st.audit))
    witnesses = (
        "".join(
            f"<li>cosigned by <strong>{esc(w)}</strong> at size {size}, {esc(iso_time(ts))}</li>"
            for w, size, ts in cosigs
        )
        if cosigs
        else "<li>no witness cosignatures yet</li>"
    )
    cp = (
        f"<p>Size <strong>{int(checkpoint['size'])}</strong> (origin {esc(checkpoint.get('origin', ''))})"
        f"<br>root <code>{esc(checkpoint.get('root', ''))}</code></p><ul>{witnesses}</ul>"
        + link("/audit", "Open the audit log")
    )
    body = (
        '<div class="cards">'
        f'<section class="card"><h2>Applications by state</h2>{states}</section>'
        f'<section class="card"><h2>Permits expiring within 30 days</h2>{soon}</section>'
        f'<section class="card"><h2>Status list</h2>{sl}</section>'
        f'<section class="card"><h2>Audit log: newest checkpoint</h2>{cp}</section>'
        "</div>"
    )
    return render(request, "Dashboard", body)


# ---------------------------------------------------------------------------- applications
@staff_only(operation="applications")
async def applications(request: web.Request) -> web.StreamResponse:
    st = state(request)
    wanted = request.query.get("state", "")
    status = wanted if wanted in q.STATES else None
    page_no = page_param(request)
    rows, total = await st.db(
        lambda: q.list_applications(
            st.hdab.engine, status=status, offset=page_no * PER_PAGE, limit=PER_PAGE
        )
    )
    filt = (
        '<form method="get" action="/console/applications" class="filters">'
        + select(
            "state",
            [("", "all states"), *((s, s) for s in q.STATES)],
            selected=status or "",
            label="State",
        )
        + "<button type=submit>Show</button></form>"
    )
    listing = table(
        ["application", "title (applicant's words)", "applicant", "purpose", "state", "received"],
        [
            [
                link(f"/applications/{a.id}", a.id),
                esc(app_title(a.body)),
                esc(a.applicant),
                esc(", ".join(a.purposes)),
                badge(a.status),
                esc(iso_time(a.created_at)),
            ]
            for a in rows
        ],
    )
    query = f"state={status}" if status else ""
    body = filt + listing + pager("/applications", page_no, total, PER_PAGE, query)
    return render(request, "Applications", body)


@staff_only(operation="application")
async def application_page(request: web.Request) -> web.StreamResponse:
    st = state(request)
    v = viewer(request)
    a = await load_application(request)
    hashes = [str(g.get("feature_spec_hash", "")) for g in a.body.get("data", [])]
    specs = await st.db(lambda: st.store.specs(hashes))
    decisions = await st.db(lambda: st.store.decisions(application_id=a.id))
    parts = [
        done_flash(request),
        f"<p>{badge(a.status)} <strong>{esc(app_title(a.body))}</strong></p>",
        '<section class="card"><h2>Application</h2>',
        permit_html(a.body),
        f"<p class=muted>application hash <code>{esc(a.application_hash)}</code></p></section>",
        '<section class="card"><h2>Feature specification</h2>',
    ]
    for h in dict.fromkeys(hashes):
        doc = specs.get(h)
        parts.append(f"<p>pinned hash <code>{esc(h)}</code></p>")
        if doc is not None:
            parts.append(spec_table(orjson.loads(doc)))
        else:
            parts.append("<p class=bad>Not on file: attach the document the applicant sent.</p>")
            if a.status == "pending" and v.role in ("reviewer", "admin"):
                parts.append(
                    form(
                        f"/applications/{a.id}/spec",
                        v,
                        '<input type="hidden" name="hash" value="' + esc(h) + '">'
                        '<label for="f-spec">Specification (JSON)</label>'
                        '<textarea name="spec" id="f-spec" rows="6"></textarea>',
                        "Attach",
                    )
                )
    parts.append("</section>")
    parts.append(f'<section class="card"><h2>History</h2>{history_table(a, decisions)}</section>')
    if a.status == "pending" and v.role in ("reviewer", "admin"):
        parts.append('<section class="card"><h2>Decide</h2>')
        parts.append(form(f"/applications/{a.id}/approve", v, "", "Approve", cls="inline"))
        parts.append(
            form(
                f"/applications/{a.id}/refuse",
                v,
                select("reason", REFUSE_REASONS, label="Reason"),
                "Refuse",
                cls="inline",
            )
        )
        parts.append("</section>")
    elif a.status == "approved":
        parts.append(
            '<section class="card"><h2>Next</h2>'
            + link(f"/applications/{a.id}/sign", "Issue and sign the permit", cls="button")
            + "</section>"
        )
    elif a.status == "issued" and a.jti:
        parts.append(
            f"<p>{link(f'/permits/{a.jti}', 'Open the permit ' + a.jti, cls='button')}</p>"
        )
    return render(request, f"Application {a.id}", "".join(parts))


@staff_only("reviewer", operation="approve")
async def post_approve(request: web.Request) -> web.StreamResponse:
    st = state(request)
    staff = current_staff(request)
    app_id = request.match_info["id"]

    def run() -> str:
        rec = st.hdab.approve(app_id)
        st.store.add_decision(app_id, rec.status, staff.id, now=st.now(), reason=rec.reason)
        return str(rec.status)

    status = await st.act(staff.id, run)
    return see_other(f"/applications/{app_id}?done={status}")


@staff_only("reviewer", operation="refuse")
async def post_refuse(request: web.Request) -> web.StreamResponse:
    st = state(request)
    staff = current_staff(request)
    app_id = request.match_info["id"]
    reason = form_value(request, "reason")
    if not CODE.fullmatch(reason):
        raise ValidationError("choose a reason", code="REASON_INVALID")

    def run() -> None:
        st.hdab.refuse(app_id, reason)
        st.store.add_decision(app_id, "refused", staff.id, now=st.now(), reason=reason)

    await st.act(staff.id, run)
    return see_other(f"/applications/{app_id}?done=refused")


@staff_only("reviewer", operation="attach_spec")
async def post_spec(request: web.Request) -> web.StreamResponse:
    st = state(request)
    staff = current_staff(request)
    a = await load_application(request)
    pinned = form_value(request, "hash")
    if pinned not in {g.get("feature_spec_hash") for g in a.body.get("data", [])}:
        raise ValidationError(
            "that hash is not pinned by this application", code="PARAMETER_INVALID"
        )
    spec = parse_spec(form_value(request, "spec"), pinned)
    text = spec.to_json(indent=False).decode()

    def attach() -> None:
        st.store.put_spec(pinned, text, staff.id, now=st.now())
        st.record(
            "application.spec_attached",
            staff=staff.id,
            subject={"application": a.id},
            details={"spec_hash": pinned},
        )

    await st.db(attach)
    return see_other(f"/applications/{a.id}?done=spec")


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/", dashboard),
        ("GET", "/applications", applications),
        ("GET", f"/applications/{ID}", application_page),
        ("POST", f"/applications/{ID}/approve", post_approve),
        ("POST", f"/applications/{ID}/refuse", post_refuse),
        ("POST", f"/applications/{ID}/spec", post_spec),
    ]


__all__ = ["routes"]
