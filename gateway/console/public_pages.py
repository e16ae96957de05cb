"""The public register (Art. 57) as a page and as JSON, and the console's static files.

Readable without signing in. Per permit: holder organisation, purpose in words,
data holders and datasets, dates and status; never the authorised persons (they
are people) nor the signed token.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from gateway.console.html import badge, link, pager, table
from gateway.console.security import page_param, public, render, state
from gateway.errors import NotFoundError
from gateway.permit_render import esc, iso_time, purposes_in_words
from permits import hdab_queries as q
from trust import parse_jws

PER_PAGE = 50
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


def register_entry(p: q.PermitSummary) -> dict[str, Any]:
    """One register line: what Art. 57(1) asks to publish, nothing about persons."""
    payload = orjson.loads(parse_jws(p.token).payload)
    holder = payload.get("holder_of_permit", {})
    return {
        "permit": p.jti,
        "version": p.version,
        "status": p.status,
        "holder": {
            "id": holder.get("id"),
            "name": holder.get("name"),
            "country": holder.get("country"),
        },
        "purposes": list(p.purposes),
        "purposes_in_words": purposes_in_words(p.purposes),
        "data": [
            {"holder": g.get("holder"), "datasets": g.get("datasets", [])}
            for g in payload.get("data", [])
        ],
        "issued": iso_time(p.iat),
        "valid_from": iso_time(p.nbf),
        "valid_until": iso_time(p.exp),
        "revoked": iso_time(p.revoked_at) if p.revoked_at else None,
        "reason": p.reason,
        "permit_hash": p.permit_hash,
    }


async def _page(request: web.Request) -> tuple[list[dict[str, Any]], int, int]:
    st = state(request)
    page_no = page_param(request)
    rows, total = await st.db(
        lambda: q.list_permits(st.hdab.engine, offset=page_no * PER_PAGE, limit=PER_PAGE)
    )
    return [register_entry(p) for p in rows], total, page_no


def refusal_entry(a: q.ApplicationSummary) -> dict[str, Any]:
    """A refused application as the register lists it: organisation, purposes, reason code."""
    return {
        "application": a.id,
        "applicant": a.applicant,
        "purposes": list(a.purposes),
        "purposes_in_words": purposes_in_words(a.purposes),
        "reason": a.reason,
        "decided": iso_time(a.decided_at) if a.decided_at else None,
    }


async def _refusals(request: web.Request) -> list[dict[str, Any]]:
    """The newest refusals (first page only: the register is about permits first)."""
    st = state(request)
    rows, _ = await st.db(
        lambda: q.list_applications(st.hdab.engine, status="refused", limit=PER_PAGE)
    )
    return [refusal_entry(a) for a in rows]


@public
async def register_page(request: web.Request) -> web.StreamResponse:
    entries, total, page_no = await _page(request)
    listing = table(
        [
            "permit",
            "holder",
            "purpose",
            "data holders and datasets",
            "valid from",
            "valid until",
            "status",
        ],
        [
            [
                f"<code>{esc(e['permit'])}</code> v{e['version']}",
                f"{esc(e['holder']['name'])} <span class=muted>({esc(e['holder']['id'])}, {esc(e['holder']['country'])})</span>",
                "<br>".join(esc(w) for w in e["purposes_in_words"]),
                "<br>".join(
                    f"{esc(d['holder'])}: {esc(', '.join(map(str, d['datasets'])))}"
                    for d in e["data"]
                ),
                esc(e["valid_from"]),
                esc(e["valid_until"]),
                badge(e["status"])
                + (f" <span class=muted>{esc(e['reason'])}</span>" if e["reason"] else ""),
            ]
            for e in entries
        ],
    )
    intro = (
        f"<p>Data permits issued by {esc(state(request).org)} under Regulation (EU) 2025/327, "
        "Art. 57. No personal data is published. Also as "
        + link("/register.json" + (f"?page={page_no}" if page_no else ""), "JSON")
        + ".</p>"
    )
    refusals = await _refusals(request)
    refused = "<h2>Refused applications (newest)</h2>" + (
        table(
            ["application", "applicant", "purpose", "reason", "decided"],
            [
                [
                    f"<code>{esc(r['application'])}</code>",
                    esc(r["applicant"]),
                    "<br>".join(esc(w) for w in r["purposes_in_words"]),
                    esc(r["reason"] or ""),
                    esc(r["decided"] or ""),
                ]
                for r in refusals
            ],
        )
        if refusals
        else "<p>None.</p>"
    )
    return render(
        request,
        "Public register of data permits",
        intro + listing + pager("/register", page_no, total, PER_PAGE) + refused,
    )


@public
async def register_json(request: web.Request) -> web.StreamResponse:
    entries, total, page_no = await _page(request)
    body = {
        "hdab": state(request).org,
        "total": total,
        "page": page_no,
        "per_page": PER_PAGE,
        "permits": entries,
        "refusals": await _refusals(request),
    }
    return web.Response(
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=5"},
    )


@public
async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        raise NotFoundError("no such file", code="NOT_FOUND")
    data = resources.files("gateway.console").joinpath("static", name).read_bytes()
    return web.Response(
        body=data,
        content_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=300"},
    )


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/register", register_page),
        ("GET", "/register.json", register_json),
        ("GET", "/static/{name}", static_file),
    ]


__all__ = ["register_entry", "routes"]
