"""OperationOutcome -> one line a human can act on.

Pure functions: the HTTP layer hands us whatever JSON the server sent; we
never raise here, because a malformed error body must not hide the error.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

# FHIR issue-type codes under ``transient`` (http://hl7.org/fhir/issue-type):
# the request may succeed if simply repeated later.
TRANSIENT_ISSUE_CODES = frozenset(
    {"transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled"}
)

_MAX_TEXT = 300


def _clean(text: str) -> str:
    """Collapse whitespace and control characters so the result is one line."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= _MAX_TEXT else flat[: _MAX_TEXT - 1] + "…"


def is_operation_outcome(body: object) -> bool:
    return isinstance(body, Mapping) and body.get("resourceType") == "OperationOutcome"


def outcome_issues(body: object) -> list[Mapping[str, Any]]:
    if not is_operation_outcome(body):
        return []
    assert isinstance(body, Mapping)
    issues = body.get("issue")
    if not isinstance(issues, list):
        return []
    return [i for i in issues if isinstance(i, Mapping)]


def is_transient_outcome(body: object) -> bool:
    """True when every error-level issue is of a transient type (worth retrying)."""
    issues = [i for i in outcome_issues(body) if i.get("severity") in ("error", "fatal", None)]
    return bool(issues) and all(i.get("code") in TRANSIENT_ISSUE_CODES for i in issues)


def summarize_outcome(body: object) -> str | None:
    """``"error/not-supported: Unknown search parameter 'x'"`` (issues joined by ``; ``).

    Uses ``diagnostics``, else ``details.text``, else the first coding's
    display/code. Returns ``None`` when ``body`` is not an OperationOutcome.
    """
    if not is_operation_outcome(body):
        return None
    parts: list[str] = []
    for issue in outcome_issues(body):
        severity = str(issue.get("severity", "error"))
        code = str(issue.get("code", "unknown"))
        text = issue.get("diagnostics")
        if not isinstance(text, str) or not text.strip():
            details = issue.get("details")
            text = None
            if isinstance(details, Mapping):
                text = details.get("text")
                codings = details.get("coding")
                if not text and isinstance(codings, list) and codings:
                    first = codings[0]
                    if isinstance(first, Mapping):
                        text = first.get("display") or first.get("code")
        label = f"{severity}/{code}"
        parts.append(f"{label}: {_clean(str(text))}" if text else label)
    return "; ".join(parts) if parts else "OperationOutcome without issues"


def outcome_codes(body: object) -> list[str]:
    """Issue codes of an OperationOutcome (for counting, never free text)."""
    return [str(i.get("code", "unknown")) for i in outcome_issues(body)]


_WORD = re.compile(r"\b[A-Z][A-Za-z]{1,63}\b")


def is_error_outcome(body: object) -> bool:
    """True when an OperationOutcome holds an error or fatal issue (not just warnings)."""
    return any(i.get("severity") in ("error", "fatal", None) for i in outcome_issues(body))


def outcome_types(body: object, known: Collection[str]) -> set[str]:
    """Resource types an OperationOutcome is about (from ``expression``, ``location``, text).

    Servers name the failed type in different places: ``expression``
    (``Observation.subject``), the older ``location``, or only the diagnostics
    ("Failed to export Observation"). Words are matched against ``known``
    resource types, so nothing but a type name ever comes out.
    """
    found: set[str] = set()
    for issue in outcome_issues(body):
        for key in ("expression", "location"):
            values = issue.get(key)
            for value in values if isinstance(values, list) else []:
                if isinstance(value, str):
                    head = value.split(".", 1)[0].split("[", 1)[0]
                    if head in known:
                        found.add(head)
        texts = [issue.get("diagnostics")]
        details = issue.get("details")
        if isinstance(details, Mapping):
            texts.append(details.get("text"))
        for text in texts:
            if isinstance(text, str):
                found.update(w for w in _WORD.findall(text[:2000]) if w in known)
    found.discard("OperationOutcome")
    return found
