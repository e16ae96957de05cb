"""Page layout and form helpers: every page is built here, so escaping and CSRF are never forgotten.

Rules kept by construction: every dynamic value goes through :func:`esc` (the
applicant typed much of what is shown), every ``<form>`` is a POST built by
:func:`form` and carries the session's CSRF token, and no page has an inline
script or style (the Content-Security-Policy forbids both).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.permit_render import esc

PREFIX = "/console"


@dataclass(frozen=True)
class Viewer:
    """Who looks at the page: a signed-in staff member (id, role, CSRF) or the public."""

    staff_id: str | None = None
    role: str | None = None
    csrf: str = ""


PUBLIC = Viewer()


def url(path: str) -> str:
    return PREFIX + path


def link(path: str, text: str, *, cls: str = "") -> str:
    c = f' class="{esc(cls)}"' if cls else ""
    return f'<a href="{esc(url(path))}"{c}>{esc(text)}</a>'


def form(
    action: str, viewer: Viewer, fields: str, button: str, *, cls: str = "", confirm: str = ""
) -> str:
    """A POST form to ``action`` with the CSRF token; ``confirm`` asks before submitting (JS)."""
    data = f' data-confirm="{esc(confirm)}"' if confirm else ""
    c = f' class="{esc(cls)}"' if cls else ""
    return (
        f'<form method="post" action="{esc(url(action))}"{c}{data}>'
        f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'
        f'{fields}<button type="submit">{esc(button)}</button></form>'
    )


def select(
    name: str, options: Iterable[tuple[str, str]], *, selected: str = "", label: str = ""
) -> str:
    opts = "".join(
        f'<option value="{esc(v)}"{" selected" if v == selected else ""}>{esc(t)}</option>'
        for v, t in options
    )
    field = f'<select name="{esc(name)}" id="f-{esc(name)}">{opts}</select>'
    return f'<label for="f-{esc(name)}">{esc(label)}</label>{field}' if label else field


def text_input(
    name: str, label: str, *, value: str = "", kind: str = "text", extra: str = ""
) -> str:
    return (
        f'<label for="f-{esc(name)}">{esc(label)}</label>'
        f'<input type="{esc(kind)}" name="{esc(name)}" id="f-{esc(name)}" value="{esc(value)}"{extra}>'
    )


def table(head: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "grid") -> str:
    """``head`` is plain text (escaped here); each row's cells are HTML already escaped."""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def pager(path: str, page: int, total: int, per_page: int, query: str = "") -> str:
    last = max(0, (total - 1) // per_page)
    sep = "&" if query else ""
    parts = []
    if page > 0:
        parts.append(link(f"{path}?{query}{sep}page={page - 1}", "« newer"))
    parts.append(f"<span>page {page + 1} of {last + 1} · {total} in all</span>")
    if page < last:
        parts.append(link(f"{path}?{query}{sep}page={page + 1}", "older »"))
    return '<nav class="pager">' + " ".join(parts) + "</nav>"


def badge(status: str) -> str:
    return f'<span class="badge s-{esc(status)}">{esc(status.replace("_", " "))}</span>'


def flash(message: str, *, ok: bool = True) -> str:
    return f'<p class="flash {"ok" if ok else "bad"}" role="status">{esc(message)}</p>'


def page(title: str, body: str, viewer: Viewer, *, hdab: str) -> str:
    """The whole document: header with navigation (who is signed in), main content."""
    if viewer.staff_id:
        nav = " ".join(
            [
                link("/", "Dashboard"),
                link("/applications", "Applications"),
                link("/permits", "Permits"),
                link("/register", "Public register"),
                link("/audit", "Audit log"),
            ]
        )
        who = f'<span class="who">{esc(viewer.staff_id)} · {esc(viewer.role or "")}</span>' + form(
            "/logout", viewer, "", "Sign out", cls="inline"
        )
    else:
        nav = link("/register", "Public register")
        who = link("/login", "Staff sign-in")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)} · {esc(hdab)}</title>"
        f'<link rel="stylesheet" href="{url("/static/console.css")}">'
        f'<script src="{url("/static/console.js")}" defer></script>'
        f'</head><body><header><div class="brand">{esc(hdab)} · data permits</div>'
        f"<nav>{nav}</nav><div>{who}</div></header>"
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


__all__ = [
    "PREFIX",
    "PUBLIC",
    "Viewer",
    "badge",
    "flash",
    "form",
    "link",
    "page",
    "pager",
    "select",
    "table",
    "text_input",
    "url",
]
