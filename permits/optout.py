"""Opt-out registry (Art. 71): who must be excluded before any feature is computed.

``fhir_adapters`` consumes the :class:`OptOutRegistry` protocol (DEVELOPERS.md):
``is_opted_out(patient_key) -> bool`` with ``patient_key`` = ``Patient.id``.
Two sources:

* FHIR R4 ``Consent`` resources, read with a configured :class:`OptOutPolicy`
  (which policy URIs / scope codes mean "secondary use"); per patient the most
  recent relevant active Consent decides (``provision.type`` deny = opted out),
  and on equal dates deny wins;
* a plain list of pseudonymous patient ids (one per line).

Fail closed: an opt-out Consent whose patient cannot be resolved raises
:class:`OptOutError` (strict mode, the default) rather than silently including
that person. :class:`CountingOptOut` counts exclusions so the number (never the
ids) goes into the audit trail as ``optout.applied``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from permits.audit import AuditSink
from permits.errors import OptOutError
from permits.model import Permit

DEFAULT_POLICY_URI = "urn:ehds:policy:art71-opt-out"
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


@runtime_checkable
class OptOutRegistry(Protocol):
    def is_opted_out(self, patient_key: str) -> bool: ...


@dataclass(frozen=True)
class OptOutPolicy:
    """Which Consents speak about secondary use under the EHDS.

    A Consent is relevant if it is ``active`` and either cites one of
    ``policy_uris`` (``Consent.policy.uri`` or ``policyRule`` coding code/system)
    or has a ``scope`` coding whose code is in ``scope_codes``.
    """

    policy_uris: frozenset[str] = frozenset({DEFAULT_POLICY_URI})
    scope_codes: frozenset[str] = frozenset({"research"})
    strict: bool = True


class NoOptOut:
    """Nobody is excluded: only for permits under the Art. 71(4) exception."""

    def is_opted_out(self, patient_key: str) -> bool:
        return False


class PseudonymOptOutRegistry:
    """A set of pseudonymous patient keys that opted out."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = frozenset(k.strip() for k in keys if k.strip())

    def is_opted_out(self, patient_key: str) -> bool:
        return patient_key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_file(cls, path: str | Path) -> PseudonymOptOutRegistry:
        """One id per line; blank lines and ``#`` comments ignored. Unreadable -> OptOutError."""
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise OptOutError(f"cannot read opt-out list: {type(exc).__name__}") from None
        return cls(line.split("#", 1)[0] for line in lines)


@dataclass
class ConsentStats:
    consents: int = 0
    relevant: int = 0
    ignored: int = 0
    unresolved: int = 0
    opted_out: int = 0


class ConsentOptOutRegistry:
    """Opt-outs read from FHIR R4 Consent resources under an :class:`OptOutPolicy`."""

    def __init__(self, opted_out: Iterable[str], stats: ConsentStats | None = None) -> None:
        self._keys = frozenset(opted_out)
        self.stats = stats or ConsentStats(opted_out=len(self._keys))

    def is_opted_out(self, patient_key: str) -> bool:
        return patient_key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_resources(
        cls,
        resources: Iterable[Mapping[str, Any]],
        policy: OptOutPolicy | None = None,
        *,
        now: datetime | None = None,
    ) -> ConsentOptOutRegistry:
        policy = policy or OptOutPolicy()
        now = now or datetime.now(UTC)
        stats = ConsentStats()
        latest: dict[str, tuple[datetime, bool]] = {}
        for resource in _consents(resources):
            stats.consents += 1
            if resource.get("status") != "active" or not _relevant(resource, policy):
                stats.ignored += 1
                continue
            provision = resource.get("provision") or {}
            deny = provision.get("type", "deny") == "deny"
            if not _in_period(provision.get("period"), now):
                stats.ignored += 1
                continue
            key = _patient_key(resource)
            if key is None:
                stats.unresolved += 1
                if deny and policy.strict:
                    raise OptOutError("an opt-out Consent has no resolvable Patient reference")
                continue
            stats.relevant += 1
            when = _parse_time(resource.get("dateTime")) or datetime.min.replace(tzinfo=UTC)
            prev = latest.get(key)
            if prev is None or when > prev[0] or (when == prev[0] and deny):
                latest[key] = (when, deny)
        keys = [k for k, (_, deny) in latest.items() if deny]
        stats.opted_out = len(keys)
        return cls(keys, stats)


def _consents(resources: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for resource in resources:
        if resource.get("resourceType") == "Bundle":
            for entry in resource.get("entry") or []:
                inner = entry.get("resource") if isinstance(entry, Mapping) else None
                if isinstance(inner, Mapping) and inner.get("resourceType") == "Consent":
                    yield inner
        elif resource.get("resourceType") == "Consent":
            yield resource


def _relevant(consent: Mapping[str, Any], policy: OptOutPolicy) -> bool:
    for p in consent.get("policy") or []:
        if isinstance(p, Mapping) and p.get("uri") in policy.policy_uris:
            return True
    for coding in (consent.get("policyRule") or {}).get("coding") or []:
        if coding.get("code") in policy.policy_uris or coding.get("system") in policy.policy_uris:
            return True
    return any(
        coding.get("code") in policy.scope_codes
        for coding in (consent.get("scope") or {}).get("coding") or []
    )


def _patient_key(consent: Mapping[str, Any]) -> str | None:
    ref = (consent.get("patient") or consent.get("subject") or {}).get("reference")
    if not isinstance(ref, str):
        return None
    match = _PATIENT_REF.search(ref)
    return match.group(1) if match else None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _in_period(period: object, now: datetime) -> bool:
    if not isinstance(period, Mapping):
        return True
    start, end = _parse_time(period.get("start")), _parse_time(period.get("end"))
    return not ((start and now < start) or (end and now > end))


@dataclass
class CountingOptOut:
    """Wraps a registry and counts distinct patients checked and excluded."""

    registry: OptOutRegistry
    _checked: set[str] = field(default_factory=set)
    _excluded: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def is_opted_out(self, patient_key: str) -> bool:
        out = self.registry.is_opted_out(patient_key)
        with self._lock:
            self._checked.add(patient_key)
            if out:
                self._excluded.add(patient_key)
        return out

    @property
    def patients(self) -> int:
        return len(self._checked)

    @property
    def excluded(self) -> int:
        return len(self._excluded)

    def record(self, sink: AuditSink, subject: Mapping[str, str]) -> None:
        """Write the counts (never the ids) as ``optout.applied``."""
        sink.record(
            "optout.applied",
            subject=subject,
            details={"excluded_opt_out": self.excluded, "patients": self.patients},
        )


def registry_for_permit(permit: Permit, registry: OptOutRegistry) -> OptOutRegistry:
    """The registry to apply under ``permit``: none only under the Art. 71(4) exception."""
    return registry if permit.opt_out.applied else NoOptOut()


__all__ = [
    "DEFAULT_POLICY_URI",
    "ConsentOptOutRegistry",
    "ConsentStats",
    "CountingOptOut",
    "NoOptOut",
    "OptOutPolicy",
    "OptOutRegistry",
    "PseudonymOptOutRegistry",
    "registry_for_permit",
]
