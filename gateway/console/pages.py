"""Staff pages: dashboard, applications (review, decide), issue and co-sign, permits (amend, revoke).

GET handlers only read; each POST changes one thing through the HDAB domain service
(which writes the audit event inside its transaction, tagged with the acting staff
member) and answers 303 to the page that shows the result.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.console.html import (
    Viewer,
    badge,
    flash,
    form,
    link,
    pager,
    select,
    table,
    text_input,
)
from gateway.console.security import (
    ConsoleRefusal,
    current_staff,
    form_value,
    page_param,
    render,
    see_other,
    staff_only,
    state,
    viewer,
)
from gateway.console.signing import SigningState, add_cosignatures, signing_state
from gateway.console.spec_view import parse_spec, spec_table
from gateway.errors import NotFoundError, ValidationError
from gateway.permit_render import esc, iso_time, permit_html, purposes_in_words
from permits import hdab_queries as q
from permits.signing import sign_permit
from trust import parse_jws

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
_CODE = re.compile(r"^[a-z0-9_.:-]{1,64}$")
_ID = r"{id:[A-Za-z0-9._:@-]{1,128}}"


def _done(request: web.Request) -> str:
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


def _title(body: dict[str, Any]) -> str:
    """The application's title: the first line of the research question (applicant's words)."""
    text = str((body.get("purpose") or {}).get("description", "")).strip().splitlines()
    first = text[0] if text else "(no description)"
    return first[:120] + ("…" if len(first) > 120 else "")


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
    cosigs = checkpoint.get("cosignatures") or []
    witnesses = (
        "".join(f"<li>{esc(c.get('witness', c))}</li>" for c in cosigs)
        if cosigs
        else "<li>no witness cosignatures (none configured)</li>"
    )
    cp = (
        f"<p>Size <strong>{int(checkpoint['size'])}</strong>, signed {esc(checkpoint.get('time', ''))}"
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
                esc(_title(a.body)),
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


async def _application(request: web.Request) -> q.ApplicationSummary:
    st = state(request)
    app_id = request.match_info["id"]
    found = await st.db(lambda: q.get_application(st.hdab.engine, app_id))
    if found is None:
        raise NotFoundError(f"application {app_id} not found", code="HDAB_NOT_FOUND")
    return found


def _history(a: q.ApplicationSummary, decisions: list[Any]) -> str:
    rows = [["received", "applicant", esc(iso_time(a.created_at)), ""]]
    rows += [
        [esc(d.action), esc(d.staff_id), esc(iso_time(d.at)), esc(d.reason or "")]
        for d in decisions
    ]
    if a.decided_at and not any(d.action in ("approved", "refused") for d in decisions):
        rows.append([esc(a.status), "HDAB API", esc(iso_time(a.decided_at)), esc(a.reason or "")])
    return table(["decision", "by", "when", "reason"], rows)


@staff_only(operation="application")
async def application_page(request: web.Request) -> web.StreamResponse:
    st = state(request)
    v = viewer(request)
    a = await _application(request)
    hashes = [str(g.get("feature_spec_hash", "")) for g in a.body.get("data", [])]
    specs = await st.db(lambda: st.store.specs(hashes))
    decisions = await st.db(lambda: st.store.decisions(application_id=a.id))
    parts = [
        _done(request),
        f"<p>{badge(a.status)} <strong>{esc(_title(a.body))}</strong></p>",
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
    parts.append(f'<section class="card"><h2>History</h2>{_history(a, decisions)}</section>')
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
    if not _CODE.fullmatch(reason):
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
    a = await _application(request)
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


# ------------------------------------------------------------------------- issue and co-sign
def _four_eyes(request: web.Request, approver: str | None, operation: str) -> None:
    st = state(request)
    staff = current_staff(request)
    if st.settings.four_eyes and approver is not None and approver == staff.id:
        raise ConsoleRefusal(
            "four-eyes rule: you approved this application, so another staff member signs it",
            reason="four_eyes",
            operation=operation,
        )


def _signatures_html(s: SigningState) -> str:
    rows = [
        [esc(org), "<span class=ok>signed</span>" if done else "<span class=bad>waiting</span>"]
        for org, done in s.signers
    ]
    return table(["HDAB", "signature"], rows)


@staff_only(operation="sign_page")
async def sign_page(request: web.Request) -> web.StreamResponse:
    st = state(request)
    v = viewer(request)
    a = await _application(request)
    if a.status != "approved":
        return see_other(f"/applications/{a.id}")
    pending = await st.db(lambda: st.store.pending(a.id))
    approver = await st.db(lambda: st.store.approver(a.id))
    parts = [_done(request)]
    if pending is None:
        preview = dict(a.body)
        now = st.now()
        preview.pop("duration_days", None)
        preview.update(
            iss={"id": st.hdab.issuer.id, "country": st.hdab.issuer.country},
            nbf=now,
            exp=now + int(a.body.get("duration_days", 1)) * DAY,
        )
        parts.append(
            '<section class="card"><h2>What will be signed</h2>'
            "<p>The permit below, valid from the moment of signing.</p>"
            + permit_html(preview)
            + "</section>"
        )
        cross = a.body.get("cross_border")
        who = (
            f"<p>Cross-border: this HDAB signs first, then each co-issuer "
            f"({esc(', '.join(cross.get('co_issuers', [])))}) adds its signature.</p>"
            if cross
            else "<p>National permit: one signature, this HDAB's.</p>"
        )
        note = (
            f"<p class=muted>Approved by {esc(approver)}; four-eyes rule: another staff member signs.</p>"
            if approver and st.settings.four_eyes
            else ""
        )
        parts.append(
            '<section class="card"><h2>Sign</h2>'
            + who
            + note
            + form(f"/applications/{a.id}/sign", v, "", "Sign the permit")
            + "</section>"
        )
    else:
        s = signing_state(pending.token, a.body, st.hdab.issuer.id, st.peers)
        payload = orjson.loads(parse_jws(pending.token).payload)
        parts.append(
            '<section class="card"><h2>Signatures so far</h2>'
            + _signatures_html(s)
            + f"<p>Waiting for: <strong>{esc(', '.join(s.missing) or 'nobody')}</strong></p>"
            + "<p>Send the lead-signed permit to each co-issuer: "
            + link(f"/applications/{a.id}/draft.jws", "download it")
            + f"; permit hash <code>{esc(pending.permit_hash)}</code>.</p>"
            + form(
                f"/applications/{a.id}/cosign",
                v,
                '<label for="f-token">Permit as returned by a co-issuer (JWS JSON)</label>'
                '<textarea name="token" id="f-token" rows="5"></textarea>',
                "Add co-signature",
            )
            + "</section>"
            + '<section class="card"><h2>What is being signed</h2>'
            + permit_html(payload)
            + "</section>"
        )
    return render(request, f"Issue and co-sign {a.id}", "".join(parts))


@staff_only("signer", operation="sign")
async def post_sign(request: web.Request) -> web.StreamResponse:
    st = state(request)
    staff = current_staff(request)
    app_id = request.match_info["id"]
    approver = await st.db(lambda: st.store.approver(app_id))
    _four_eyes(request, approver, "sign")
    a = await _application(request)
    if a.body.get("cross_border") is None:

        def issue() -> str:
            issued = st.hdab.issue(app_id)
            st.store.add_decision(app_id, "signed", staff.id, now=st.now(), jti=issued.jti)
            return str(issued.jti)

        jti = await st.act(staff.id, issue)
        return see_other(f"/permits/{jti}?done=issued")

    def sign_first() -> None:
        if st.store.pending(app_id) is not None:
            raise ValidationError(
                "already signed; waiting for co-signatures", code="HDAB_BAD_STATE"
            )
        permit = st.hdab.draft(app_id)
        token = sign_permit(permit, [st.hdab.key])
        st.store.put_pending(app_id, permit.jti, token, permit.permit_hash(), now=st.now())
        st.record(
            "permit.signed",
            staff=staff.id,
            subject={"application": app_id, "permit": permit.jti},
            details={"permit_hash": permit.permit_hash(), "signatures": 1},
        )
        st.store.add_decision(app_id, "signed", staff.id, now=st.now(), jti=permit.jti)

    await st.act(staff.id, sign_first)
    return see_other(f"/applications/{app_id}/sign?done=signed")


@staff_only("signer", operation="cosign")
async def post_cosign(request: web.Request) -> web.StreamResponse:
    st = state(request)
    staff = current_staff(request)
    a = await _application(request)
    pending = await st.db(lambda: st.store.pending(a.id))
    if pending is None:
        raise ValidationError("nothing waits for a co-signature here", code="HDAB_BAD_STATE")
    merged = add_cosignatures(pending.token, form_value(request, "token"), a.body, st.peers)
    s = signing_state(merged, a.body, st.hdab.issuer.id, st.peers)

    def run() -> str:
        st.record(
            "permit.cosigned",
            staff=staff.id,
            subject={"application": a.id, "permit": pending.jti},
            details={"permit_hash": pending.permit_hash, "signatures": s.count},
        )
        st.store.add_decision(a.id, "cosigned", staff.id, now=st.now(), jti=pending.jti)
        if s.missing:
            st.store.put_pending(a.id, pending.jti, merged, pending.permit_hash, now=st.now())
            return f"/applications/{a.id}/sign?done=cosigned"
        issued = st.hdab.issue_signed(a.id, merged)
        st.store.drop_pending(a.id)
        return f"/permits/{issued.jti}?done=issued"

    target = await st.act(staff.id, run)
    return see_other(target)


@staff_only(operation="draft")
async def draft_jws(request: web.Request) -> web.StreamResponse:
    st = state(request)
    app_id = request.match_info["id"]
    pending = await st.db(lambda: st.store.pending(app_id))
    if pending is None:
        raise NotFoundError("no permit waits for co-signatures here", code="HDAB_NOT_FOUND")
    return web.Response(
        text=pending.token,
        content_type="application/jose+json",
        headers={"Content-Disposition": f'attachment; filename="{pending.jti}.jws.json"'},
    )


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
        _done(request),
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
    if not _CODE.fullmatch(reason):
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
        ("GET", "/", dashboard),
        ("GET", "/applications", applications),
        ("GET", f"/applications/{_ID}", application_page),
        ("POST", f"/applications/{_ID}/approve", post_approve),
        ("POST", f"/applications/{_ID}/refuse", post_refuse),
        ("POST", f"/applications/{_ID}/spec", post_spec),
        ("GET", f"/applications/{_ID}/sign", sign_page),
        ("POST", f"/applications/{_ID}/sign", post_sign),
        ("POST", f"/applications/{_ID}/cosign", post_cosign),
        ("GET", f"/applications/{_ID}/draft.jws", draft_jws),
        ("GET", "/permits", permits_list),
        ("GET", f"/permits/{_ID}", permit_page),
        ("POST", f"/permits/{_ID}/revoke", post_revoke),
        ("POST", f"/permits/{_ID}/amend", post_amend),
    ]


__all__ = ["routes"]
