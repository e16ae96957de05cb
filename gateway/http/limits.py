"""Request line and header limits, answered as problem+json instead of aiohttp's plain text.

aiohttp's parser refuses a header field over 8190 bytes itself, with a
plain-text 400 that no client of ours can parse. The parser is therefore given
generous limits (``PARSER_LIMITS``) and the guard middleware applies the real
ones (8 KiB per header value, 8 KiB of request target) with a problem+json 400
that carries a stable code and is audited like every other refusal.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.errors import BadRequestError

MAX_HEADER_BYTES = 8192
MAX_TARGET_BYTES = 8192
PARSER_LIMITS: dict[str, Any] = {"max_field_size": 65_536, "max_line_size": 65_536}


def check_header_sizes(request: web.Request) -> None:
    """Refuse a header value or request target over 8 KiB (problem+json 400)."""
    if len(request.raw_path) > MAX_TARGET_BYTES:
        raise BadRequestError("request target longer than 8 KiB", code="REQUEST_TARGET_TOO_LONG")
    for name, value in request.raw_headers:
        if len(name) + len(value) > MAX_HEADER_BYTES:
            raise BadRequestError("a request header is longer than 8 KiB", code="HEADER_TOO_LARGE")


__all__ = ["MAX_HEADER_BYTES", "MAX_TARGET_BYTES", "PARSER_LIMITS", "check_header_sizes"]
