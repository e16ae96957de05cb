"""Structural validation with fhir.resources: ``full``, ``sample`` or ``off``.

Why three modes: a pydantic model validation costs 40–55x an ``orjson``
parse (about 1.5k resources/s on Synthea here), so validating every resource
of a national Bulk export would dominate the run. ``full`` is for audits and
small cohorts; ``sample`` validates a deterministic fraction (chosen by a
hash of type and id, so every run and every site picks the same resources)
and estimates the invalid rate; ``off`` checks only what the feature code
needs (a JSON object with a known ``resourceType``).

FHIR releases: fhir.resources 8 ships R5 (5.0.0) as ``fhir.resources`` and
R4B (4.3.0) as ``fhir.resources.R4B``; there is no plain R4 (4.0.1) module.
R4B is the R4 validator here: the clinical resources (Patient, Observation,
Condition, Encounter, ...) are unchanged between 4.0.1 and 4.3.0, and R4-only
types that R4B dropped (``MedicinalProduct*``, ``EffectEvidenceSynthesis``,
...) are passed through unvalidated rather than quarantined.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Literal

from fhir_adapters.errors import ValidationModeError
from fhir_adapters.fhirpath.functions import REFERENCE_TABLE
from fhir_adapters.quality import INVALID_RESOURCE, QualityReport

ValidationMode = Literal["full", "sample", "off"]
VALIDATION_MODES: tuple[str, ...] = ("full", "sample", "off")
DEFAULT_SAMPLE_RATE = 0.05

_MODULES = {"R4": "fhir.resources.R4B", "R5": "fhir.resources"}


def check_mode(mode: str) -> ValidationMode:
    if mode not in VALIDATION_MODES:
        raise ValidationModeError(f"unknown validation mode {mode!r}; use full, sample or off")
    return mode  # type: ignore[return-value]


@lru_cache(maxsize=512)
def _model_class(version: str, resource_type: str) -> Callable[[Any], Any] | None:
    """The pydantic ``model_validate`` for a type, or None if that release lacks it."""
    module_name = _MODULES.get(version)
    if module_name is None:
        raise ValidationModeError(f"unknown FHIR version {version!r}; use R4 or R5")
    import importlib

    module = importlib.import_module(module_name)
    try:
        cls = module.get_fhir_model_class(resource_type)
    except (ValueError, KeyError, AttributeError):
        return None
    validate: Callable[[Any], Any] = cls.model_validate
    return validate


def _format_loc(resource_type: str, loc: tuple[Any, ...]) -> str:
    parts = [resource_type]
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def validation_errors(
    resource: Mapping[str, Any], version: str = "R4"
) -> list[tuple[str, str]] | None:
    """``[(path, message), ...]`` for an invalid resource, ``[]`` if valid, None if unchecked.

    Messages come from pydantic's ``msg`` only; the offending *input* value
    (which may be personal data) is never copied.
    """
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return [("resourceType", "missing resourceType")]
    validate = _model_class(version, rtype)
    if validate is None:
        return None
    data = dict(resource)
    data.pop(REFERENCE_TABLE, None)  # the reader's urn table, not FHIR content
    try:
        validate(data)
    except Exception as exc:  # pydantic.ValidationError and fhir_core's value errors
        errors = getattr(exc, "errors", None)
        if callable(errors):
            try:
                items = errors()
            except Exception:  # pragma: no cover - defensive
                items = []
            out = [
                (_format_loc(rtype, tuple(e.get("loc", ()))), str(e.get("msg", "invalid")))
                for e in items
            ]
            if out:
                return out
        return [(rtype, type(exc).__name__)]
    return []


def in_sample(resource: Mapping[str, Any], rate: float) -> bool:
    """Deterministic sampling by a hash of ``type/id`` (same choice on every run)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    key = f"{resource.get('resourceType')}/{resource.get('id')}".encode()
    return (zlib.crc32(key) & 0xFFFFFFFF) < rate * 0x1_0000_0000


class Validator:
    """Applies one validation mode; quarantines invalid resources into a report."""

    __slots__ = ("checked", "invalid", "mode", "rate", "report")

    def __init__(
        self,
        mode: str,
        report: QualityReport,
        *,
        sample_rate: float = DEFAULT_SAMPLE_RATE,
    ) -> None:
        self.mode: ValidationMode = check_mode(mode)
        self.rate = 1.0 if self.mode == "full" else (0.0 if self.mode == "off" else sample_rate)
        self.report = report
        self.checked = 0
        self.invalid = 0
        report.validation_mode = self.mode

    def accept(
        self,
        resource: Mapping[str, Any],
        version: str,
        source: str | None = None,
        *,
        line: int | None = None,
        entry: int | None = None,
        alternative: str | None = None,
    ) -> bool:
        """True to keep the resource; False after quarantining it.

        ``alternative``: a second release to try when the resource showed none
        and is invalid under ``version`` (valid under either is kept). The
        quarantine record names ``source`` and its ``line`` or Bundle ``entry``.
        """
        if self.rate == 0.0 or not in_sample(resource, self.rate):
            return True
        errors = validation_errors(resource, version)
        if errors is None:
            return True
        self.checked += 1
        self.report.validated += 1
        if not errors:
            return True
        if alternative is not None and validation_errors(resource, alternative) == []:
            return True
        self.invalid += 1
        path, message = errors[0]
        rid = resource.get("id")
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        self.report.add(
            INVALID_RESOURCE,
            resource_type=str(resource.get("resourceType")),
            resource_id=rid if isinstance(rid, str) else None,
            path=path,
            message=f"FHIR {version}: {message}{more}",
            source=source,
            line=line,
            entry=entry,
        )
        return False

    @property
    def estimated_invalid_rate(self) -> float | None:
        """Invalid fraction among validated resources (an estimate in sample mode)."""
        return self.invalid / self.checked if self.checked else None
