"""Errors of ``gateway``: one small hierarchy, each with a stable ``code`` and HTTP status.

The HTTP layer turns every one of these into ``application/problem+json`` with
``code`` as an extension member; the CLI prints ``ehds: error: [CODE] message``.
Codes never change once released. Messages never contain personal data:
identifiers, hashes, counts and limits only.
"""

from __future__ import annotations

from trust import TrustError


class GatewayError(TrustError):
    """Base class of everything the gateway refuses."""

    code: str = "GATEWAY_ERROR"
    status: int = 400
    title: str = "Request refused"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        if status is not None:
            self.status = status


class ConfigError(GatewayError):
    """The TOML file or an environment variable is missing, malformed or out of range."""

    code = "CONFIG_INVALID"
    status = 500
    title = "Invalid configuration"


class BadRequestError(GatewayError):
    """The body is not JSON, not an object, or a field is missing or of the wrong type."""

    code = "BAD_REQUEST"
    status = 400
    title = "Bad request"


class BadJsonError(BadRequestError):
    code = "BAD_JSON"
    title = "Body is not valid JSON"


class ValidationError(BadRequestError):
    code = "VALIDATION_FAILED"
    status = 422
    title = "Request does not match the schema"


class BodyTooLargeError(GatewayError):
    code = "BODY_TOO_LARGE"
    status = 413
    title = "Request body too large"


class UnsupportedMediaTypeError(GatewayError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415
    title = "Unsupported media type"


class AuthError(GatewayError):
    """Authentication failed: no signature, a bad one, an unknown key, a replay."""

    code = "AUTH_INVALID"
    status = 401
    title = "Authentication failed"


class AuthMissingError(AuthError):
    code = "AUTH_MISSING"
    title = "Signed request required"


class AuthReplayError(AuthError):
    code = "AUTH_REPLAY"
    title = "Request replayed"


class ForbiddenError(GatewayError):
    """Authenticated, but the key's role does not allow this route."""

    code = "AUTH_FORBIDDEN"
    status = 403
    title = "Not allowed for this key"


class NotFoundError(GatewayError):
    code = "NOT_FOUND"
    status = 404
    title = "Not found"


class ConflictError(GatewayError):
    code = "CONFLICT"
    status = 409
    title = "Conflict with the current state"


class UnavailableError(GatewayError):
    """A dependency (audit log, FHIR source, SuperNode) is not available: fail closed."""

    code = "UNAVAILABLE"
    status = 503
    title = "Service unavailable"


class DisclosureError(GatewayError):
    """An aggregate would fall below the disclosure floor, so nothing is returned."""

    code = "BELOW_DISCLOSURE_FLOOR"
    status = 422
    title = "Result below the disclosure floor"


__all__ = [
    "AuthError",
    "AuthMissingError",
    "AuthReplayError",
    "BadJsonError",
    "BadRequestError",
    "BodyTooLargeError",
    "ConfigError",
    "ConflictError",
    "DisclosureError",
    "ForbiddenError",
    "GatewayError",
    "NotFoundError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "ValidationError",
]
