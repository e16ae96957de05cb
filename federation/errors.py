"""Errors raised by ``federation``: one base class, stable string codes.

The CLI prints ``[CODE] message``; audit entries carry the lower-case ``reason``.
Messages never contain row values or patient identifiers: counts, hashes and
codes only.
"""

from __future__ import annotations

from trust import TrustError


class FederationError(TrustError):
    """Base class; ``code`` is stable and machine-readable, ``reason`` goes to audit."""

    code = "FED_ERROR"
    reason = "federation_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ModelFormatError(FederationError):
    """A model or tree pack is malformed, oversized or carries forbidden fields."""

    code = "FED_MODEL_FORMAT"
    reason = "model_format"


class AccessDeniedError(FederationError):
    """The permit or the coordinator's request does not allow this operation here."""

    code = "FED_ACCESS_DENIED"
    reason = "access_denied"

    def __init__(self, message: str, *, reason: str | None = None, recorded: bool = False) -> None:
        super().__init__(message, reason=reason)
        #: True when the decision is already in the site's audit log (PermitGuard writes it).
        self.recorded = recorded


class InsufficientDataError(FederationError):
    """Fewer rows (per site or per leaf) than the permit's minimum."""

    code = "FED_INSUFFICIENT_DATA"
    reason = "insufficient_rows"


class JobConfigError(FederationError):
    """The training job is inconsistent with itself or with the permit's bounds."""

    code = "FED_JOB_CONFIG"
    reason = "job_config"


class TooFewSitesError(FederationError):
    """Fewer sites answered a round than the configured minimum."""

    code = "FED_TOO_FEW_SITES"
    reason = "too_few_sites"


class EngineError(FederationError):
    """The Flower engine (simulation or deployment) failed to run the job."""

    code = "FED_ENGINE"
    reason = "engine_failure"
