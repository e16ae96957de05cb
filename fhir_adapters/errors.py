"""Errors of ``fhir_adapters``: one small hierarchy, each with a stable ``code``.

Codes are stable strings (the CLI prints ``[CODE]``, HTTP puts them in
problem+json). Messages never carry patient data: resource types, element
paths and counts only.
"""

from __future__ import annotations


class FhirAdapterError(Exception):
    """Base class of every error raised by ``fhir_adapters``."""

    code: str = "FHIR_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


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
