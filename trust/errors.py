"""The one error base of the project: every package's error base subclasses :class:`TrustError`.

Why one base: the CLI prints ``ehds: error: [CODE] message`` and the HTTP layer
returns problem+json with ``code``; both need a single type to catch and a
single attribute to read, whatever package refused. Codes are stable once
released. Messages carry key ids, sizes and hashes only, never token contents.

The trust layer's own refusals (bad key, bad signature, key outside its use,
non-canonical encoding, bad identifier) are the subclasses below. Higher
packages translate them into their own codes at their boundary where their
public contract already names a code (``AUDIT_BAD_SIGNATURE``,
``PERMIT_SIGNATURE_INVALID``, ``AUTH_BAD_SIGNATURE``).
"""

from __future__ import annotations


class TrustError(Exception):
    """Base class of every deliberate refusal in the project, with a stable ``code``."""

    code: str = "TRUST_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class MalformedError(TrustError, ValueError):
    """Bytes that are not what they claim: bad base64url, JSON, or token shape.

    Also a ``ValueError``, so parsers that already catch that keep working.
    """

    code = "TRUST_MALFORMED"


class NotCanonicalError(MalformedError):
    """An encoding with more than one form given in a non-canonical one (base64url, JSON)."""

    code = "TRUST_NOT_CANONICAL"


class TrustKeyError(TrustError):
    """A key that is malformed, of an unsupported type, or whose ``kid`` is not its thumbprint."""

    code = "TRUST_BAD_KEY"


class UnknownKeyError(TrustKeyError):
    """A ``kid`` the verifier's trust store does not hold."""

    code = "TRUST_UNKNOWN_KEY"


class KeyUseError(TrustKeyError):
    """A key used outside its declared use (e.g. a witness key signing a permit)."""

    code = "TRUST_KEY_USE"


class HeaderError(TrustError):
    """A JWS protected header that tries to steer verification; ``code`` names how.

    Codes: ``TRUST_ALG_NONE``, ``TRUST_ALG_SYMMETRIC``, ``TRUST_ALG_NOT_ALLOWED``,
    ``TRUST_EMBEDDED_KEY``, ``TRUST_CRIT``, ``TRUST_HEADER_PARAM``,
    ``TRUST_TYP_MISMATCH``, ``TRUST_UNPROTECTED_HEADER``, ``TRUST_KID_MISSING``.
    """

    code = "TRUST_BAD_HEADER"


class AlgorithmError(TrustError):
    """A JWS whose ``alg`` is not the algorithm pinned for its key."""

    code = "TRUST_ALG_MISMATCH"


class SignatureError(TrustError):
    """A signature that does not verify."""

    code = "TRUST_BAD_SIGNATURE"


class IdentifierError(TrustError):
    """A value outside the identifier, code or hash grammar."""

    code = "TRUST_BAD_IDENTIFIER"


__all__ = [
    "AlgorithmError",
    "HeaderError",
    "IdentifierError",
    "KeyUseError",
    "MalformedError",
    "NotCanonicalError",
    "SignatureError",
    "TrustError",
    "TrustKeyError",
    "UnknownKeyError",
]
