"""Errors of ``fhir_adapters``: one small hierarchy, each with a stable ``code``.

Codes are stable strings (the CLI prints ``[CODE]``, HTTP puts them in
problem+json). Messages never carry patient data: resource types, element
paths and counts only.
"""

from __future__ import annotations

from trust import TrustError


class FhirAdapterError(TrustError):
    """Base class of every error raised by ``fhir_adapters``."""

    code: str = "FHIR_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code)


class FhirPathSyntaxError(FhirAdapterError):
    """A FHIRPath expression could not be tokenised or parsed."""

    code = "FHIRPATH_SYNTAX"


class FhirPathCompileError(FhirAdapterError):
    """A FHIRPath expression parsed but uses an unknown function, constant or type."""

    code = "FHIRPATH_COMPILE"


class FhirPathEvaluationError(FhirAdapterError):
    """A FHIRPath expression failed on one resource (e.g. singleton expected, got many)."""

    code = "FHIRPATH_EVALUATION"


class ViewDefinitionError(FhirAdapterError):
    """A ViewDefinition is invalid; raised by ``compile_view`` before any data is read."""

    code = "VIEW_INVALID"


class ViewEvaluationError(FhirAdapterError):
    """A valid ViewDefinition could not be evaluated on one resource.

    Raised per resource (``resource_type`` and ``index`` in the stream are
    attached, never the resource content); callers may count and skip it.
    """

    code = "VIEW_EVALUATION"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        resource_type: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.resource_type = resource_type
        self.index = index


# --------------------------------------------------------------- FHIR sources
# Raised by ``fhir_adapters.sources`` (search, Bulk Data ``$export``, SMART
# auth). Messages carry HTTP statuses, resource types, URLs of the *server*
# (never of a patient) and the server's own OperationOutcome diagnostics.


class FhirSourceError(FhirAdapterError):
    """A FHIR server could not be read (network, protocol or server error)."""

    code = "FHIR_SOURCE"


class FhirHttpError(FhirSourceError):
    """The server answered with an HTTP error (after any retries).

    ``status`` is the HTTP status; ``outcome`` the one-line summary of the
    OperationOutcome the server sent with it, if any.
    """

    code = "FHIR_HTTP"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        outcome: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.outcome = outcome


class FhirOperationOutcomeError(FhirHttpError):
    """The server refused the request with an OperationOutcome (4xx/5xx)."""

    code = "FHIR_OPERATION_OUTCOME"


class FhirUnauthorizedError(FhirHttpError):
    """401/403 from the FHIR server even after the access token was renewed."""

    code = "FHIR_UNAUTHORIZED"


class FhirProtocolError(FhirSourceError):
    """The server's answer breaks the FHIR / Bulk Data protocol (bad JSON, missing header...)."""

    code = "FHIR_PROTOCOL"


class FhirCapabilityError(FhirSourceError):
    """The CapabilityStatement says the server cannot do what was asked."""

    code = "FHIR_CAPABILITY"


class BulkExportError(FhirSourceError):
    """A Bulk Data ``$export`` job failed, or its saved state cannot be used."""

    code = "BULK_EXPORT"


class BulkExportTimeout(BulkExportError):
    """The export job did not complete before the overall deadline (the job is kept, resumable)."""

    code = "BULK_EXPORT_TIMEOUT"


class SmartAuthError(FhirSourceError):
    """SMART Backend Services authorization failed (discovery, assertion or token refused)."""

    code = "SMART_AUTH"


# ---------------------------------------------------------------- sources, validation, features


class SourceError(FhirAdapterError):
    """A source cannot be opened at all (missing path, unreadable file, not FHIR).

    Per-resource problems (a bad NDJSON line, an invalid resource) are *not*
    raised: they are counted in the quality report and the run goes on.
    """

    code = "FHIR_SOURCE"


class ValidationModeError(FhirAdapterError):
    """An unknown validation mode or FHIR version was requested."""

    code = "FHIR_VALIDATION_MODE"


class FeatureSpecError(FhirAdapterError):
    """A feature specification is malformed (checked before any data is read)."""

    code = "FEATURE_SPEC_INVALID"


class UnitConversionError(FhirAdapterError):
    """A unit is not valid UCUM or cannot be converted to the feature's unit."""

    code = "UNIT_UNKNOWN"


class ConceptMapError(FhirAdapterError):
    """A ConceptMap resource is malformed."""

    code = "CONCEPTMAP_INVALID"


class CohortTooSmallError(FhirAdapterError):
    """The cohort is below the permitted minimum: no matrix is returned at all.

    Carries only the two counts, never patient keys.
    """

    code = "FEATURE_COHORT_TOO_SMALL"

    def __init__(self, rows: int, min_rows: int) -> None:
        super().__init__(f"cohort has {rows} patients, below the permitted minimum of {min_rows}")
        self.rows = rows
        self.min_rows = min_rows
