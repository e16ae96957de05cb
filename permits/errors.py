"""Errors of the ``permits`` package, each with a stable string ``code``.

The CLI prints ``ehds: error: [CODE] message`` and HTTP maps ``code`` into
problem+json, so codes never change once released. Messages never contain
personal data: identifiers, hashes and counts only.
"""

from __future__ import annotations

from permits.reasons import ReasonCode
from trust import TrustError


class PermitError(TrustError):
    """Base class: anything the permits package refuses."""

    code: str = "PERMIT_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code)


class PermitModelError(PermitError):
    """A permit, application or status list does not match the model."""

    code = "PERMIT_INVALID"


class PermitKeyError(PermitError):
    """A key or trust list is unusable (wrong type, private key in a trust list, bad kid)."""

    code = "PERMIT_KEY_ERROR"


class VerificationError(PermitError):
    """Verification failed; ``reason`` is the typed code the guard reports.

    ``code`` is derived from the reason (``permit_expired`` -> ``PERMIT_EXPIRED``)
    so every failed check has its own stable error code too.
    """

    def __init__(self, reason: ReasonCode, message: str | None = None) -> None:
        code = reason.value.upper()
        if not code.startswith("PERMIT_"):
            code = f"PERMIT_{code}"
        super().__init__(message or reason.value.replace("_", " "), code=code)
        self.reason = reason


class HdabError(PermitError):
    """The HDAB domain service refused a step (unknown id, wrong state)."""

    code = "HDAB_ERROR"


class HdabNotFoundError(HdabError):
    code = "HDAB_NOT_FOUND"


class HdabStateError(HdabError):
    """The step does not fit the current state (e.g. issuing a refused application)."""

    code = "HDAB_BAD_STATE"


class HdabPolicyError(HdabError):
    """The application breaks the Regulation's rules (Art. 53(2), 54, 68(12), 71(4))."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, code=f"HDAB_{reason.upper()}")
        self.reason = reason


class OptOutError(PermitError):
    """The opt-out source cannot be read; fail closed rather than include anyone."""

    code = "OPTOUT_ERROR"


__all__ = [
    "HdabError",
    "HdabNotFoundError",
    "HdabPolicyError",
    "HdabStateError",
    "OptOutError",
    "PermitError",
    "PermitKeyError",
    "PermitModelError",
    "VerificationError",
]
