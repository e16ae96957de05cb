"""The interfaces ``federation`` needs from the outside, as structural protocols.

``federation`` may import ``audit_chain``, ``permits`` and ``fhir_adapters``,
but the Flower apps only talk to these small shapes; adapters in
:mod:`federation.adapters` fit the real packages to them. That keeps the
Flower/XGBoost mechanics testable on their own and lets a site swap its data
source or audit store without touching the training code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class AuditSink(Protocol):
    """DEVELOPERS.md's sink shape; ``audit_chain.sink.SignedLogSink`` implements it."""

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None: ...


@runtime_checkable
class CheckpointSource(Protocol):
    """A sink that can also name the signed checkpoint covering what it recorded."""

    def checkpoint(self) -> Mapping[str, object]: ...


@dataclass(frozen=True)
class AccessTerms:
    """What a verified permit allows at one site: the bounds training must obey."""

    permit_jti: str
    spec_hash: str
    strategies: frozenset[str]
    operations: frozenset[str]
    outputs: frozenset[str]
    max_rounds: int
    max_depth: int
    min_rows_per_site: int
    min_rows_per_leaf: int
    #: the authorised person's key thumbprint that signed the request (audit, never a name)
    requester: str | None = None
    #: dataset identifiers the permit names for this holder (empty: not restricted)
    datasets: frozenset[str] = frozenset()
    #: inclusive ISO dates (start, end) of records in scope; ``None``: not restricted
    time_range: tuple[str, str] | None = None


class Authorizer(Protocol):
    """Checks the permit and the coordinator's signed request at a site.

    ``params`` are the parameters the site is *about to use* (spec hash,
    rounds, max_depth, min_child_weight, strategy); they must equal the signed
    ones. ``app`` (deployment runs only: ``digest``, ``clientapp``,
    ``clientapp_version`` of the run's app as the site observed it) must equal the
    permit's authorised app. Raises :class:`federation.errors.AccessDeniedError`
    (``reason`` set, ``recorded`` true when the decision is already in the audit
    log) on denial. :class:`federation.adapters.PermitGuardAuthorizer` wraps
    ``permits.PermitGuard``.
    """

    def authorize(
        self,
        permit_token: str,
        request_token: str,
        *,
        operation: str,
        params: Mapping[str, Any],
        app: Mapping[str, str] | None = None,
    ) -> AccessTerms: ...


class RequestSigner(Protocol):
    """Signs the data user's per-site, per-round request (``permits.request``)."""

    def sign(self, *, holder: str, operation: str, params: Mapping[str, Any]) -> str: ...


@dataclass(frozen=True)
class SiteDataset:
    """Feature rows of one site, never leaving it; counts go to the audit log."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    patients: int
    excluded_opt_out: int = 0
    quarantined: int = 0
    #: resources dropped because their record date is outside the permit's time_range
    excluded_time_range: int = 0
    extra: Mapping[str, int] = field(default_factory=dict)
    #: Pseudonymous patient key of each row (never leaves the site): the held-out
    #: split is drawn per patient from these (:func:`federation.site.split_rows`).
    patient_keys: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])


class SiteDataSource(Protocol):
    """Computes a site's features for the permitted feature specification.

    A source may also offer ``version(spec_hash) -> str``: a key that changes
    whenever the rows would (spec, data snapshot, opt-out registry); the
    ClientApp then reuses the rows it computed for the same key.
    """

    #: the dataset identifier this source serves (checked against the permit's datasets)
    dataset: str | None

    def load(
        self,
        spec: Mapping[str, Any],
        *,
        spec_hash: str,
        time_range: tuple[str, str] | None = None,
    ) -> SiteDataset:
        """``time_range``: inclusive ISO days; records dated outside it must not be used."""
        ...
