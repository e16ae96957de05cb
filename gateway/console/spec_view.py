"""A feature specification as a reviewer reads it: one table row per feature.

The permit pins only the specification's hash; the reviewer attaches the document,
the console checks it hashes to the pinned value (``fhir_adapters`` computes the
canonical hash, the same one every gateway enforces) and shows what will be
computed: features, codes with their display text, windows and units.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir_adapters.features import FeatureSpec
from gateway.errors import ValidationError
from gateway.permit_render import esc


def parse_spec(text: str, pinned: str) -> FeatureSpec:
    """The specification in ``text`` if it is valid and hashes to ``pinned``."""
    try:
        spec = FeatureSpec.from_json(text)
    except Exception as exc:  # FeatureSpecError and friends: say what is wrong, not a 500
        code = getattr(exc, "code", "FEATURE_SPEC_INVALID")
        raise ValidationError(f"not a valid feature specification: {exc}", code=str(code)) from None
    if spec.canonical_hash() != pinned:
        raise ValidationError(
            f"this specification hashes to {spec.canonical_hash()}, the application pins {pinned}",
            code="FEATURE_SPEC_HASH_MISMATCH",
        )
    return spec


def _window(w: Mapping[str, Any] | None) -> str:
    if not w:
        return "whole history up to the index date"
    start, end = w.get("from"), w.get("to")
    a = "any time" if start is None else f"{start:g} days"
    b = "index date" if end in (None, 0) else f"{end:g} days"
    return f"{a} to {b}"


def _codes(codes: Any) -> str:
    if not codes:
        return "—"
    items = []
    for c in codes:
        display = c.get("display")
        items.append(
            f"<li><code>{esc(c.get('code', ''))}</code> {esc(display) if display else ''}"
            f" <span class=muted>{esc(c.get('system', ''))}</span></li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def spec_table(document: Mapping[str, Any]) -> str:
    """Features (and the label) of a specification document as an escaped HTML table."""
    recipe = document.get("recipe") or {}
    rows = []
    for f in recipe.get("features") or []:
        what = f.get("aggregation") or f.get("type", "")
        if f.get("type") == "one_hot":
            what = (
                "one-hot of "
                + str(f.get("attribute", ""))
                + ": "
                + ", ".join(map(str, f.get("categories") or []))
            )
        rows.append(
            f"<tr><td>{esc(f.get('name', ''))}</td><td>{esc(what)}</td>"
            f"<td>{_codes(f.get('codes'))}</td><td>{esc(_window(f.get('window')))}</td>"
            f"<td>{esc(f.get('unit') or '—')}</td></tr>"
        )
    label = recipe.get("label")
    if label:
        rows.append(
            f"<tr class=label><td>{esc(label.get('name', ''))} (label)</td><td>outcome</td>"
            f"<td>{_codes(label.get('codes'))}</td><td>{esc(_window(label.get('window')))}</td>"
            "<td>—</td></tr>"
        )
    head = "<tr><th>feature</th><th>computed as</th><th>codes</th><th>window</th><th>unit</th></tr>"
    title = f"{esc(document.get('name', ''))} {esc(document.get('version', ''))}"
    return f"<p><strong>{title}</strong></p><table class=grid>{head}{''.join(rows)}</table>"


__all__ = ["parse_spec", "spec_table"]
