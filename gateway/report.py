"""The demo's HTML report: one self-contained page a newcomer can read in minutes.

Everything is inlined (CSS and SVG ROC curves), so the page opens from disk with no
network and no JavaScript, and can be archived next to the audit log it describes.
Only aggregates go in: AUCs, counts, hashes, the permit's terms. No rows, no ids of
patients; the page is as safe to share as the model card.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A palette readable for the common colour-vision deficiencies (Okabe-Ito).
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


@dataclass(frozen=True)
class RocCurve:
    """One ROC curve: its legend label, the points, and the area under it."""

    label: str
    fpr: Sequence[float]
    tpr: Sequence[float]
    auc: float
    dashed: bool = False


@dataclass
class ReportData:
    title: str
    generated_at: str
    summary: list[tuple[str, str]]
    curves: list[RocCurve]
    permit: Mapping[str, Any]
    audit: list[tuple[str, str]]
    audit_events: Mapping[str, int]
    quality: Sequence[Mapping[str, Any]]
    training: list[tuple[str, str]]
    refusals: list[tuple[str, str]] = field(default_factory=list)
    cosignatures: Sequence[Mapping[str, Any]] = ()
    """One row per log: who cosigned its checkpoints (C2SP witnesses) and how far."""
    provenance: list[tuple[str, str]] = field(default_factory=list)
    """The model-provenance check (``ehds model verify``), when the caller ran one."""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _downsample(
    xs: Sequence[float], ys: Sequence[float], limit: int = 400
) -> list[tuple[float, float]]:
    """Keep the SVG small: a ROC curve with 20k thresholds draws the same with 400."""
    points = list(zip(xs, ys, strict=True))
    if len(points) <= limit:
        return points
    step = len(points) / limit
    kept = [points[int(i * step)] for i in range(limit)]
    kept.append(points[-1])
    return kept


def roc_svg(curves: Sequence[RocCurve], size: int = 420) -> str:
    """An SVG ROC plot with axes, the chance diagonal, and one polyline per curve."""
    pad = 44
    inner = size - 2 * pad

    def x(v: float) -> float:
        return pad + v * inner

    def y(v: float) -> float:
        return size - pad - v * inner

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img" aria-label="ROC curves">',
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="#fff" stroke="#999"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{y(0):.1f}" x2="{x(tick):.1f}" y2="{y(0) + 4:.1f}" stroke="#666"/>'
            f'<text x="{x(tick):.1f}" y="{y(0) + 16:.1f}" font-size="10" text-anchor="middle">{tick:g}</text>'
            f'<line x1="{x(0) - 4:.1f}" y1="{y(tick):.1f}" x2="{x(0):.1f}" y2="{y(tick):.1f}" stroke="#666"/>'
            f'<text x="{x(0) - 7:.1f}" y="{y(tick) + 3:.1f}" font-size="10" text-anchor="end">{tick:g}</text>'
        )
    parts.append(
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#bbb" stroke-dasharray="4 4"/>'
    )
    parts.append(
        f'<text x="{size / 2}" y="{size - 8}" font-size="11" text-anchor="middle">False positive rate</text>'
        f'<text x="12" y="{size / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {size / 2})">True positive rate</text>'
    )
    for i, curve in enumerate(curves):
        colour = _PALETTE[i % len(_PALETTE)]
        pts = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in _downsample(curve.fpr, curve.tpr))
        dash = ' stroke-dasharray="6 3"' if curve.dashed else ""
        width = 1.4 if curve.dashed else 2.2
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="{width}"{dash} points="{pts}">'
            f"<title>{_esc(curve.label)} (AUC {curve.auc:.3f})</title></polyline>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _legend(curves: Sequence[RocCurve]) -> str:
    rows = []
    for i, curve in enumerate(curves):
        colour = _PALETTE[i % len(_PALETTE)]
        style = "dashed" if curve.dashed else "solid"
        rows.append(
            f'<tr><td><span class="swatch" style="border-top:3px {style} {colour}"></span></td>'
            f"<td>{_esc(curve.label)}</td><td class=num>{curve.auc:.3f}</td></tr>"
        )
    return "<table><tr><th></th><th>model</th><th>ROC AUC</th></tr>" + "".join(rows) + "</table>"


def _pairs(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f"<table class=kv>{body}</table>"


def _records(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    head = "".join(f"<th>{_esc(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(row.get(k, ''))}</td>" for k in keys) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _permit_html(value: Any, depth: int = 0) -> str:
    """Nested permit terms as definition lists: readable without knowing JSON."""
    if isinstance(value, Mapping):
        items = "".join(
            f"<dt>{_esc(str(k).replace('_', ' '))}</dt><dd>{_permit_html(v, depth + 1)}</dd>"
            for k, v in value.items()
        )
        return f"<dl>{items}</dl>"
    if isinstance(value, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            return _esc(", ".join(str(v) for v in value)) or "—"
        return "<ol>" + "".join(f"<li>{_permit_html(v, depth + 1)}</li>" for v in value) + "</ol>"
    if value is None:
        return "—"
    return _esc(value)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#12325c;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85}main{padding:18px 28px;display:grid;gap:18px;
grid-template-columns:repeat(auto-fit,minmax(440px,1fr))}section{background:#fff;border-radius:8px;
padding:14px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}h2{font-size:16px;margin:0 0 10px;color:#12325c}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #eceef2;
text-align:left;vertical-align:top}th{font-weight:600;color:#444}td.num{text-align:right;
font-variant-numeric:tabular-nums}.kv th{width:38%}.swatch{display:inline-block;width:26px}
dl{margin:0}dt{font-weight:600;color:#444}dd{margin:0 0 6px 14px;word-break:break-all}
code{font-size:12px}.ok{color:#067d3c;font-weight:600}.bad{color:#b00020;font-weight:600}
"""


def render_report(data: ReportData) -> str:
    """The whole page as one HTML string."""
    sections = [
        ("At a glance", _pairs(data.summary)),
        (
            "Model quality (held-out patients at every site)",
            roc_svg(data.curves) + _legend(data.curves),
        ),
        ("Federated training", _pairs(data.training)),
        (
            "Refused requests (fail closed, audited)",
            _pairs(data.refusals) if data.refusals else "<p>none</p>",
        ),
        (
            "Audit chain",
            _pairs(data.audit)
            + "<h2 style='margin-top:12px'>Events by type</h2>"
            + _records(
                [{"event type": k, "entries": v} for k, v in sorted(data.audit_events.items())]
            ),
        ),
        *(
            [
                (
                    "Witness cosignatures: every log checked by the other organisations",
                    _records(data.cosignatures),
                )
            ]
            if data.cosignatures
            else []
        ),
        *([("Model provenance", _pairs(data.provenance))] if data.provenance else []),
        ("Data quality per site (counts only)", _records(data.quality)),
        ("The data permit, in readable form", _permit_html(data.permit)),
    ]
    body = "".join(
        f"<section><h2>{_esc(title)}</h2>{content}</section>" for title, content in sections
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>{_esc(data.title)}</title>"
        f"<style>{_CSS}</style></head><body><header><h1>{_esc(data.title)}</h1>"
        f"<p>Generated {_esc(data.generated_at)} · only models and aggregates left the sites</p></header>"
        f"<main>{body}</main></body></html>"
    )


def write_report(data: ReportData, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data), encoding="utf-8")
    return path
