"""RFC 9457 problem details (``application/problem+json``) with a stable ``code``.

Every error any package raises carries a ``code``; this module is the one place
that maps it to an HTTP status, so clients branch on ``code`` and never on the
wording of ``detail``. Details never contain personal data: the packages'
messages are identifiers, hashes and counts by contract.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "https://ehds-gateway.eu/problems/"
PROBLEM_CODE_KEY = web.ResponseKey("ehds_problem_code", str)

#: Status for errors of the domain packages, by their class name's code family.
#: Looked up by ``code`` first, then by prefix, so a new code in an existing
#: family gets a sensible status without a change here.
STATUS_BY_CODE: dict[str, int] = {
    "HDAB_NOT_FOUND": 404,
    "HDAB_BAD_STATE": 409,
    "PERMIT_INVALID": 422,
    "PERMIT_KEY_ERROR": 500,
    "PERMIT_UNKNOWN": 404,
    "PERMIT_REVOKED": 403,
    "PERMIT_EXPIRED": 403,
    "OPTOUT_ERROR": 503,
    "AUDIT_SCHEMA": 422,
    "AUDIT_OUT_OF_RANGE": 404,
    "AUDIT_BAD_PROOF": 400,
    "AUDIT_UNAVAILABLE": 503,
    "FHIR_UNAVAILABLE": 503,
}
STATUS_BY_PREFIX: tuple[tuple[str, int], ...] = (
    ("HDAB_NOT_FOUND", 404),
    ("HDAB_BAD_STATE", 409),
    ("HDAB_", 422),  # policy refusals: Art. 53(2), 54, 68(12), 71(4)
    ("PERMIT_", 403),  # verification failures
    ("AUDIT_", 500),
    ("FHIR", 422),
    ("VIEW_", 422),
    ("FEATURE", 422),
)

HTTP_CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "AUTH_MISSING",
    403: "AUTH_FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    411: "LENGTH_REQUIRED",
    413: "BODY_TOO_LARGE",
    414: "URI_TOO_LONG",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_FAILED",
    429: "TOO_MANY_REQUESTS",
    431: "HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE",
}


def status_for_code(code: str, default: int = 400) -> int:
    """The HTTP status for a package error ``code``."""
    if code in STATUS_BY_CODE:
        return STATUS_BY_CODE[code]
    for prefix, status in STATUS_BY_PREFIX:
        if code.startswith(prefix):
            return status
    return default


def problem_body(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code.lower().replace("_", "-"),
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if extra:
        for key, value in extra.items():
            body.setdefault(key, value)
    return body


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A ready ``web.Response``; the ``code`` is also kept on the response for logs and metrics."""
    body = problem_body(status, code, title, detail, instance=instance, extra=extra)
    response = web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )
    response[PROBLEM_CODE_KEY] = code
    return response


__all__ = [
    "HTTP_CODES",
    "PROBLEM_CODE_KEY",
    "PROBLEM_TYPE",
    "problem_body",
    "problem_response",
    "status_for_code",
]
