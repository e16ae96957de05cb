"""The readable permit: one rendering shared by the staff console and the demo report.

A case officer or a lawyer reads a permit, not its JSON: dates as ISO 8601 in UTC,
purposes in the words of Art. 53(1), the opt-out terms as a sentence, each data
holder's grant as a table row. Everything taken from the document is escaped, since
an applicant typed much of it. Works for an application (no ``jti`` or dates yet,
a requested ``duration_days``) as well as for a signed permit.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from permits.purposes import PURPOSE_TITLES, PurposeCode, prohibited_uses

# Known top-level members, in reading order; anything else is shown generically at the end.
_ORDER = (
    "jti",
    "version",
    "iss",
    "holder_of_permit",
    "purpose",
    "data",
    "processing",
    "opt_out",
    "spe",
    "cross_border",
    "authorised_persons",
    "duration_days",
    "iat",
    "nbf",
    "exp",
    "supersedes",
    "fees",
    "conditions",
    "profile",
)


def esc(value: object) -> str:
    """HTML-escape anything (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def iso_time(seconds: int | float | None) -> str:
    """Seconds since the epoch as ``2026-12-01T14:47:08Z`` (``—`` when absent)."""
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_date(seconds: int | float | None) -> str:
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%d")


def purpose_title(code: str) -> str:
    """``e.ii`` -> 'Art. 53(1)(e)(ii): Research: training, testing and evaluating ...'."""
    try:
        title = PURPOSE_TITLES[PurposeCode(code)]
    except ValueError:
        return f"unknown purpose code {code}"
    head, _, sub = code.partition(".")
    point = f"({head})" + (f"({sub})" if sub else "")
    return f"Art. 53(1){point}: {title}"


def purposes_in_words(codes: Iterable[str]) -> list[str]:
    return [purpose_title(str(c)) for c in codes]


def _kv(rows: Sequence[tuple[str, str]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th scope=row>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _list(items: Iterable[str]) -> str:
    items = list(items)
    if not items:
        return "—"
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _holder(h: Mapping[str, Any]) -> str:
    sector = {"public": "public sector body", "private": "private entity"}.get(
        str(h.get("sector")), str(h.get("sector", ""))
    )
    return (
        f"<strong>{esc(h.get('name', ''))}</strong> ({esc(h.get('id', ''))}), "
        f"{esc(h.get('country', ''))}, {esc(sector)}"
        f"<br><span class=muted>request key {esc(h.get('kid', ''))}</span>"
    )


def _purpose(p: Mapping[str, Any]) -> str:
    words = _list(esc(t) for t in purposes_in_words(p.get("codes", [])))
    uses = [str(u) for u in p.get("declared_uses", [])]
    banned = {u.value for u in prohibited_uses(uses)}
    declared = ", ".join(esc(u) for u in uses) or "—"
    warn = (
        f" <span class=bad>prohibited by Art. 54: {esc(', '.join(sorted(banned)))}</span>"
        if banned
        else ""
    )
    return (
        f"{words}<p class=quote>{esc(p.get('description', ''))}</p>"
        f"<p>Declared uses: {declared}{warn}</p>"
    )


def data_table(grants: Sequence[Mapping[str, Any]]) -> str:
    """Each data holder's grant as one row: datasets, time range, form, feature specification."""
    head = "<tr><th>data holder</th><th>datasets</th><th>records from</th><th>to</th><th>form</th><th>feature specification</th></tr>"
    rows = []
    for g in grants:
        tr = g.get("time_range") or {}
        rows.append(
            f"<tr><td>{esc(g.get('holder', ''))}</td>"
            f"<td>{esc(', '.join(map(str, g.get('datasets', []))))}</td>"
            f"<td>{esc(tr.get('start', '—'))}</td><td>{esc(tr.get('end', '—'))}</td>"
            f"<td>{esc(g.get('form', ''))}</td>"
            f"<td><code>{esc(g.get('feature_spec_hash', ''))}</code></td></tr>"
        )
    return f"<table class=grid>{head}{''.join(rows)}</table>"


def _processing(p: Mapping[str, Any]) -> str:
    x = p.get("federated_xgboost") or {}
    return _kv(
        [
            ("operations", esc(", ".join(map(str, p.get("operations", []))))),
            ("method", "federated XGBoost: " + esc(", ".join(map(str, x.get("strategies", []))))),
            ("boosting rounds (in total)", esc(x.get("max_rounds", "—"))),
            ("tree depth at most", esc(x.get("max_depth", "—"))),
            ("rows per site at least", esc(x.get("min_rows_per_site", "—"))),
            ("rows per leaf at least (disclosure floor)", esc(x.get("min_rows_per_leaf", "—"))),
            ("may leave the SPE", esc(", ".join(map(str, x.get("outputs", []))))),
        ],
        "kv inner",
    )


def _opt_out(o: Mapping[str, Any]) -> str:
    if o.get("applied"):
        return (
            "Applied (Art. 71): persons who opted out are excluded before any feature is computed."
        )
    return (
        "<span class=bad>Not applied</span>: exception of Art. 71(4)"
        f"<p class=quote>{esc(o.get('justification') or '')}</p>"
    )


def _fees(f: Mapping[str, Any]) -> str:
    amount = int(f.get("amount_minor", 0))
    return f"{amount // 100}.{amount % 100:02d} {esc(f.get('currency', ''))}"


def _generic(value: Any) -> str:
    if isinstance(value, Mapping):
        return _kv([(str(k).replace("_", " "), _generic(v)) for k, v in value.items()], "kv inner")
    if isinstance(value, list | tuple):
        return _list(_generic(v) for v in value)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return esc(value)


def permit_rows(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, HTML) rows in reading order; values escaped, labels plain words."""
    rows: list[tuple[str, str]] = []
    for key in [*_ORDER, *sorted(set(doc) - set(_ORDER))]:
        if key not in doc:
            continue
        v = doc[key]
        if key == "jti":
            rows.append(("permit", f"<code>{esc(v)}</code>"))
        elif key == "version":
            rows.append(("version", esc(v) + (" (original)" if v == 1 else " (amended)")))
        elif key == "iss":
            rows.append(("issued by", f"{esc(v.get('id', ''))} ({esc(v.get('country', ''))})"))
        elif key == "holder_of_permit":
            rows.append(("holder of the permit", _holder(v)))
        elif key == "purpose":
            rows.append(("purpose (Art. 53)", _purpose(v)))
        elif key == "data":
            rows.append(("data (Art. 68(10)(a))", data_table(v)))
        elif key == "processing":
            rows.append(("processing", _processing(v)))
        elif key == "opt_out":
            rows.append(("opt-out", _opt_out(v)))
        elif key == "spe":
            rows.append(
                ("secure processing environment", f"{esc(v.get('id'))} ({esc(v.get('mode'))})")
            )
        elif key == "cross_border":
            co = ", ".join(map(str, v.get("co_issuers", [])))
            rows.append(("cross-border", f"lead {esc(v.get('lead'))}; co-issued by {esc(co)}"))
        elif key == "authorised_persons":
            persons = [f"{esc(p.get('id'))} ({esc(p.get('role') or 'no role')})" for p in v]
            rows.append(("authorised persons (pseudonymous)", _list(persons)))
        elif key == "duration_days":
            rows.append(("requested duration", f"{esc(v)} days"))
        elif key == "iat":
            rows.append(("signed", esc(iso_time(v))))
        elif key == "nbf":
            rows.append(("valid from", esc(iso_time(v))))
        elif key == "exp":
            rows.append(("valid until", esc(iso_time(v))))
        elif key == "supersedes":
            rows.append(("amends the version with hash", f"<code>{esc(v)}</code>"))
        elif key == "fees":
            rows.append(("fees (Art. 62)", _fees(v) if v else "—"))
        elif key == "conditions":
            rows.append(("further conditions", _list(esc(c) for c in v)))
        elif key == "profile":
            rows.append(("format", esc(v)))
        else:
            rows.append((key.replace("_", " "), _generic(v)))
    return rows


def permit_html(doc: Mapping[str, Any]) -> str:
    """A permit or application as one readable, escaped HTML table."""
    return _kv(permit_rows(doc), "kv permit")


__all__ = [
    "data_table",
    "esc",
    "iso_date",
    "iso_time",
    "permit_html",
    "permit_rows",
    "purpose_title",
    "purposes_in_words",
]
