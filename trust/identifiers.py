"""The grammar of what may name things across organisations: identifiers, codes, hashes, kids.

Why here: permits, audit entries, jobs and keys all carry these values and
every party must agree on what is valid; an identifier accepted by one package
and refused by another is a cross-organisation bug. The grammar deliberately
leaves no room for names or free text, so no personal data fits.
"""

from __future__ import annotations

import re

from trust.errors import IdentifierError

IDENTIFIER_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
"""Organisations, permits (jti), jobs, sites, logs: never names or patient ids."""
CODE_PATTERN = r"^[a-z0-9_.:-]{1,64}$"
"""Reason, purpose, operation and strategy codes."""
HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"
"""Content hashes (permits, feature specs, models, log roots)."""
KID_PATTERN = r"^[A-Za-z0-9_-]{43}$"
"""RFC 7638 SHA-256 thumbprint, base64url without padding."""

IDENTIFIER = re.compile(IDENTIFIER_PATTERN[1:-1])
CODE = re.compile(CODE_PATTERN[1:-1])
HASH = re.compile(HASH_PATTERN[1:-1])
KID = re.compile(KID_PATTERN[1:-1])


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_identifier(value: object) -> bool:
    return _matches(IDENTIFIER, value)


def is_code(value: object) -> bool:
    return _matches(CODE, value)


def is_hash(value: object) -> bool:
    return _matches(HASH, value)


def is_kid(value: object) -> bool:
    return _matches(KID, value)


def require_identifier(value: object, what: str = "identifier") -> str:
    """``value`` if it is an identifier, else :class:`IdentifierError` naming ``what``."""
    if not is_identifier(value):
        raise IdentifierError(f"{what} must match {IDENTIFIER_PATTERN}")
    assert isinstance(value, str)
    return value


__all__ = [
    "CODE",
    "CODE_PATTERN",
    "HASH",
    "HASH_PATTERN",
    "IDENTIFIER",
    "IDENTIFIER_PATTERN",
    "KID",
    "KID_PATTERN",
    "is_code",
    "is_hash",
    "is_identifier",
    "is_kid",
    "require_identifier",
]
