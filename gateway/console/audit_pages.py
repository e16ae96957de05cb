"""The audit explorer: entries with filters, one entry with its inclusion proof, verify the log.

Filtering reads the log backwards from the newest entry in pages and stops after a
bounded number of entries per request, so a page stays fast on a long log; a link
continues further back. Proofs are checked here against the signed checkpoint, as an
outside auditor would check them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from audit_chain import EVENT_SCHEMAS
from audit_chain.schema import SUBJECT_KEYS
from gateway.console.audit_check import AuditFilter, check_inclusion, select_entries, verify_audit
from gateway.console.html import flash, link, select, table, text_input
from gateway.console.security import render, staff_only, state
from gateway.errors import NotFoundError, ValidationError
from gateway.permit_render import esc

SHOW = 50
SCAN_LIMIT = 5000
BATCH = 500


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 15:
        raise ValidationError(f"{name} must be a non-negative integer", code="PARAMETER_INVALID")
    return int(raw)


def _filter(request: web.Request) -> AuditFilter:
    kind = request.query.get("type", "")
    key = request.query.get("key", "")
    value = request.query.get("value", "").strip()
    if kind and not any(t.startswith(kind) for t in EVENT_SCHEMAS):
        raise ValidationError("unknown event type", code="PARAMETER_INVALID")
    if key and key not in SUBJECT_KEYS:
        raise ValidationError("unknown subject key", code="PARAMETER_INVALID")
    if len(value) > 128:
        raise ValidationError("value too long", code="PARAMETER_INVALID")
    return AuditFilter(kind, key, value)


def _subject(payload: dict[str, Any]) -> str:
    subject = payload.get("subject") or {}
    return ", ".join(f"{esc(k)}={esc(v)}" for k, v in sorted(subject.items()))


def _details(payload: dict[str, Any]) -> str:
    details = payload.get("details") or {}
    return ", ".join(f"{esc(k)}={esc(v)}" for k, v in sorted(details.items()))


@staff_only(operation="audit")
async def audit_list(request: web.Request) -> web.StreamResponse:
    st = state(request)
    flt = _filter(request)
    size = await st.audit.view.tree_size()
    before = min(_int(request, "before", size), size)
    found: list[Any] = []
    cursor = before
    while cursor > 0 and len(found) < SHOW and before - cursor < SCAN_LIMIT:
        start = max(0, cursor - BATCH)
        batch = await st.audit.view.entries(start, cursor)
        found.extend(reversed(select_entries(batch, flt)))
        cursor = start
    found = found[:SHOW]
    types = sorted({t.split(".")[0] + "." for t in EVENT_SCHEMAS} | set(EVENT_SCHEMAS))
    filters = (
        '<form method="get" action="/console/audit" class="filters">'
        + select(
            "type", [("", "any type"), *((t, t) for t in types)], selected=flt.type, label="Type"
        )
        + select(
            "key",
            [("", "any subject"), *((k, k) for k in sorted(SUBJECT_KEYS))],
            selected=flt.key,
            label="Subject",
        )
        + text_input("value", "equals", value=flt.value)
        + "<button type=submit>Filter</button></form>"
        + '<form method="get" action="/console/audit/verify" class="filters">'
        + "<button type=submit id=verify-log>Verify the whole log</button></form>"
    )
    rows = [
        [
            link(f"/audit/{int(e['index'])}", str(int(e["index"]))),
            esc(e["payload"].get("time", "")),
            f"<code>{esc(e['payload'].get('type', ''))}</code>",
            _subject(e["payload"]),
            _details(e["payload"]),
        ]
        for e in found
    ]
    more = ""
    if cursor > 0:
        query = urlencode(
            {k: v for k, v in (("type", flt.type), ("key", flt.key), ("value", flt.value)) if v}
        )
        more = (
            "<p>"
            + link(f"/audit?{query}&before={cursor}", f"Continue before entry {cursor}")
            + "</p>"
        )
    body = (
        filters
        + f"<p>{size} entries in the log; newest first.</p>"
        + table(["#", "time", "type", "subject", "details"], rows)
        + more
    )
    return render(request, "Audit log", body)


@staff_only(operation="audit_entry")
async def audit_entry(request: web.Request) -> web.StreamResponse:
    st = state(request)
    index = int(request.match_info["index"])
    checkpoint = await st.audit.view.checkpoint()
    size = int(checkpoint["size"])
    if index >= size:
        raise NotFoundError(f"no entry {index}: the log has {size}", code="AUDIT_OUT_OF_RANGE")
    (entry,) = await st.audit.view.entries(index, index + 1)
    leaf, path = await st.audit.view.inclusion_with_leaf(index, size)
    proof = check_inclusion(index, size, leaf, path, str(checkpoint["root"]), str(entry["event"]))
    payload = entry["payload"]
    verdict = (
        f'<p class="ok" id="proof-result">Inclusion proof verifies: {esc(proof.message)}.</p>'
        if proof.ok
        else f'<p class="bad" id="proof-result">Inclusion proof FAILS: {esc(proof.message)}</p>'
    )
    body = (
        '<section class="card"><h2>Event</h2>'
        + table(
            ["field", "value"],
            [
                ["type", f"<code>{esc(payload.get('type'))}</code>"],
                ["time", esc(payload.get("time"))],
                [
                    "signed by",
                    f"{esc(payload['actor']['org'])} (key {esc(payload['actor']['kid'])})",
                ],
                ["subject", _subject(payload)],
                ["details", _details(payload)],
            ],
        )
        + f'<details><summary>Signed event (JWS)</summary><pre class="wrap">{esc(entry["event"])}</pre></details>'
        + "</section>"
        + '<section class="card"><h2>Inclusion proof (RFC 9162)</h2>'
        + verdict
        + f"<p>Leaf hash <code>{esc(proof.leaf_hash)}</code><br>"
        f"Signed checkpoint: size {size}, root <code>{esc(proof.root)}</code></p>"
        + "<ol class=mono>"
        + "".join(f"<li><code>{esc(h)}</code></li>" for h in proof.path)
        + "</ol></section>"
        + "<p>"
        + link("/audit", "Back to the log")
        + "</p>"
    )
    return render(request, f"Audit entry {index}", body)


@staff_only(operation="audit_verify")
async def audit_verify(request: web.Request) -> web.StreamResponse:
    st = state(request)
    result = await st.db(lambda: verify_audit(st.audit, st.org))
    if result.ok:
        body = (
            flash(f"The log verifies: {result.message}.")
            + '<p id="verify-result" class="ok">OK</p>'
        )
    else:
        where = "" if result.index is None else f" at entry {result.index}"
        body = flash(
            f"The log does NOT verify{where}: [{result.reason}] {result.message}", ok=False
        )
        body += '<p id="verify-result" class="bad">FAILED</p>'
    body += f"<p>{result.size} entries checked: every event signature, the Merkle tree and the signed checkpoints.</p>"
    body += "<p>" + link("/audit", "Back to the log") + "</p>"
    return render(request, "Audit log verification", body)


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/audit", audit_list),
        ("GET", "/audit/verify", audit_verify),
        ("GET", r"/audit/{index:\d{1,15}}", audit_entry),
    ]


__all__ = ["routes"]
