"""Issue and co-sign: what will be signed, who has signed so far, sign (four-eyes), add a co-issuer's signature."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.console.html import (
    form,
    link,
    table,
)
from gateway.console.page_common import (
    DAY,
    ID,
    done_flash,
    load_application,
)
from gateway.console.security import (
    ConsoleRefusal,
    current_staff,
    form_value,
    render,
    see_other,
    staff_only,
    state,
    viewer,
)
from gateway.console.signing import SigningState, add_cosignatures, signing_state
from gateway.errors import NotFoundError, ValidationError
from gateway.permit_render import esc, permit_html
from permits.signing import sign_permit
from trust import parse_jws


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
    a = await load_application(request)
    if a.status != "approved":
        return see_other(f"/applications/{a.id}")
    pending = await st.db(lambda: st.store.pending(a.id))
    approver = await st.db(lambda: st.store.approver(a.id))
    parts = [done_flash(request)]
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
    a = await load_application(request)
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
    a = await load_application(request)
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


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", f"/applications/{ID}/sign", sign_page),
        ("POST", f"/applications/{ID}/sign", post_sign),
        ("POST", f"/applications/{ID}/cosign", post_cosign),
        ("GET", f"/applications/{ID}/draft.jws", draft_jws),
    ]


__all__ = ["routes"]
