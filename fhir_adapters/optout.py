"""Opt-out: patients on the registry are removed before any feature is computed.

The registry itself lives in ``permits.optout`` (the EHDS right to opt out of
secondary use is a permit-side concept); ``fhir_adapters`` imports nothing of
ours, so it declares the structural protocol it needs and applies it at the
very first place a patient key is seen. An opted-out patient's rows never
reach an aggregation, a count or a missingness figure; only the number of
excluded patients is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class OptOutRegistry(Protocol):
    """Provided by ``permits.optout``; keys are ``Patient.id`` (``getResourceKey()``)."""

    def is_opted_out(self, patient_key: str) -> bool: ...


class StaticOptOut:
    """A fixed set of opted-out keys (tests, CLI ``--opt-out FILE``)."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = frozenset(keys)

    def is_opted_out(self, patient_key: str) -> bool:
        return patient_key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class OptOutFilter:
    """Asks the registry once per distinct key and counts excluded patients.

    ``excluded`` counts distinct opted-out keys that belong to a Patient
    resource (call :meth:`note_patient`); rows of those patients are dropped
    wherever :meth:`keep` is asked.
    """

    __slots__ = ("_cache", "_excluded_patients", "registry")

    def __init__(self, registry: OptOutRegistry | None) -> None:
        self.registry = registry
        self._cache: dict[str, bool] = {}
        self._excluded_patients: set[str] = set()

    def keep(self, key: str) -> bool:
        if self.registry is None:
            return True
        cached = self._cache.get(key)
        if cached is None:
            cached = not bool(self.registry.is_opted_out(key))
            self._cache[key] = cached
        return cached

    def note_patient(self, key: str) -> bool:
        """Record a Patient resource's key; True if the patient stays in."""
        keep = self.keep(key)
        if not keep:
            self._excluded_patients.add(key)
        return keep

    @property
    def excluded(self) -> int:
        return len(self._excluded_patients)


_PATIENT_REF_FIELDS = ("subject", "patient", "beneficiary")


def _patient_key(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    for field in _PATIENT_REF_FIELDS:
        ref = resource.get(field)
        if type(ref) is dict:
            r = ref.get("reference")
            if type(r) is str and r.startswith("Patient/"):
                return r[8:].split("/_history", 1)[0]
    return None


def filter_stream(
    resources: Iterable[dict[str, Any]], opt_out: OptOutFilter
) -> Iterator[dict[str, Any]]:
    """Drop Patient resources on the registry and resources whose subject/patient is one.

    For callers that hand a stream to something other than
    :func:`fhir_adapters.features.extract_features` (which applies the
    registry itself, at the patient key of every view row).
    """
    for resource in resources:
        key = _patient_key(resource)
        if key is None:
            yield resource
            continue
        if resource.get("resourceType") == "Patient":
            if opt_out.note_patient(key):
                yield resource
        elif opt_out.keep(key):
            yield resource
