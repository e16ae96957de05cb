"""Adapters from the real packages to :mod:`federation.ports`, built by factory path.

Every factory takes only JSON-able keyword arguments (file paths, ids) so a
site's configuration is a small JSON file and can be rebuilt inside any
process: a Ray worker in simulation, a SuperNode's ClientApp in deployment.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import trust
from federation.errors import AccessDeniedError, JobConfigError
from federation.feature_cache import FeatureCache, cache_key, registry_version, snapshot_version
from federation.permit_view import read_permit
from federation.ports import AccessTerms, AuditSink, SiteDataset
from federation.state import SqliteGuardState
from permits import TrustList
from permits.app_pin import AppObservation
from permits.errors import VerificationError
from permits.guard import AccessRequest, PermitGuard
from permits.request import AccessParams, make_request
from permits.statuslist import StatusListStore
from permits.verify import PermitVerifier
from trust import load_jwk

# --------------------------------------------------------------------- audit sinks


class JsonlAuditSink:
    """Appends events as JSON lines (counts, hashes, codes only).

    For simulations and tests where no signed log is configured; production
    sites use ``audit_chain``'s ``SignedLogSink`` via :func:`signed_log_sink`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        line = orjson.dumps({"type": type, "subject": dict(subject), "details": dict(details)})
        with self._lock, self.path.open("ab") as fh:
            fh.write(line + b"\n")

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line]


def jsonl_sink(path: str) -> JsonlAuditSink:
    return JsonlAuditSink(path)


class CheckpointingSink:
    """``audit_chain.SignedLogSink`` plus the signed checkpoint of its log.

    ``checkpoint()`` returns the checkpoint covering everything recorded so
    far (``size``, ``root`` as ``sha256:<hex>``, ``origin``, ``kid``, ``jws``):
    what the model card cites so anyone can check the run's events against it.
    """

    def __init__(
        self, db_url: str, key_path: str, log_id: str | None = None, org: str | None = None
    ) -> None:
        from audit_chain import EventSigner
        from audit_chain.log import AuditLog
        from audit_chain.sink import SignedLogSink

        # A bare JWK (the gateway's own audit key) signs for the log's organisation.
        signer = EventSigner.load(key_path, org or ((log_id or "").rpartition(":")[0] or None))
        self.log = AuditLog.open(db_url, log_id=log_id, signer=signer)
        self.sink = SignedLogSink(self.log, signer)

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        self.sink.record(type, subject=subject, details=details)

    def checkpoint(self) -> Mapping[str, object]:
        return dict(self.log.checkpoint().to_json())

    def close(self) -> None:
        self.log.close()


def signed_log_sink(
    db_url: str, key_path: str, log_id: str | None = None, org: str | None = None
) -> CheckpointingSink:
    """Factory: an ``audit_chain`` log at ``db_url`` (SQLite/PostgreSQL) signed with ``key_path``.

    The log is named after the key's organisation unless ``log_id`` is given.
    ``key_path`` is an ``{org, alg, jwk}`` file or a bare private JWK; for the
    latter the organisation is ``org``, else the part of ``log_id`` before ``:``
    (``hospital-a:audit`` is the gateway's log of ``hospital-a``).
    """
    return CheckpointingSink(db_url, key_path, log_id, org)


# ------------------------------------------------------------ permits: site + user


class PermitGuardAuthorizer:
    """``permits.PermitGuard`` behind the :class:`~federation.ports.Authorizer` port.

    ``refusal`` is a reason code found while building the guard (e.g. a status
    list older than one accepted before): every request is then refused with it.
    """

    def __init__(self, guard: PermitGuard, refusal: str | None = None) -> None:
        self.guard = guard
        self.refusal = refusal

    def authorize(
        self,
        permit_token: str,
        request_token: str,
        *,
        operation: str,
        params: Mapping[str, Any],
        app: Mapping[str, str] | None = None,
    ) -> AccessTerms:
        if self.refusal is not None:
            raise AccessDeniedError("the site's status lists are not usable", reason=self.refusal)
        if operation not in ("train", "evaluate"):
            raise AccessDeniedError("unknown operation", reason="operation_not_allowed")
        try:
            access = AccessParams.model_validate(dict(params))
            observed = (
                None
                if app is None
                else AppObservation(
                    digest=str(app["digest"]),
                    clientapp=str(app["clientapp"]),
                    clientapp_version=str(app["clientapp_version"]),
                )
            )
        except (ValueError, KeyError) as exc:
            raise AccessDeniedError("malformed parameters", reason="request_malformed") from exc
        decision = self.guard.decide(
            AccessRequest(
                permit=permit_token,
                proof=request_token,
                operation=operation,  # type: ignore[arg-type]
                params=access,
                app=observed,
            )
        )
        if not decision.allowed or decision.permit is None or decision.grant is None:
            raise AccessDeniedError(
                "the permit guard denied the request",
                reason=decision.reason.value,
                recorded=True,
            )
        bounds = decision.permit.processing.federated_xgboost
        grant = decision.grant
        return AccessTerms(
            permit_jti=decision.permit.jti,
            requester=decision.requester,
            datasets=frozenset(grant.datasets),
            time_range=(grant.time_range.start.isoformat(), grant.time_range.end.isoformat()),
            spec_hash=decision.grant.feature_spec_hash,
            strategies=frozenset(bounds.strategies),
            operations=frozenset(decision.permit.processing.operations),
            outputs=frozenset(bounds.outputs),
            max_rounds=bounds.max_rounds,
            max_depth=bounds.max_depth,
            min_rows_per_site=bounds.min_rows_per_site,
            min_rows_per_leaf=bounds.min_rows_per_leaf,
        )


def permit_guard(
    *,
    holder: str,
    trust_list: str,
    status_list: str,
    state_db: str,
    audit: AuditSink,
    leeway: int = 30,
) -> PermitGuardAuthorizer:
    """Factory for a site: trust list (JSON), status list(s), state file.

    ``status_list`` is one token file, or the folder the hospital gateway keeps
    current (one ``*.jws`` per HDAB, fetched and pushed; see ``gateway.status_sync``).
    The highest version per HDAB is persisted in ``state_db``: an older list after
    a restart refuses every request with ``status_list_rollback``.
    ``audit`` is injected by the ClientApp (the site's own sink), so the guard's
    ``access.allowed``/``access.denied`` land in the same log as the training events.
    """
    trust = TrustList.from_file(trust_list)
    state = SqliteGuardState(state_db)
    store = StatusListStore(trust, leeway=leeway, floor=state)
    source = Path(status_list)
    try:
        files = sorted(source.glob("*.jws")) if source.is_dir() else [source]
        tokens = [f.read_text().strip() for f in files]
    except OSError as exc:
        raise JobConfigError("cannot read the site's status list") from exc
    refusal: str | None = None
    for token in tokens:
        try:
            store.update(token)
        except VerificationError as exc:  # fail closed, with the list's own reason
            refusal = refusal or exc.reason.value
    guard = PermitGuard(
        holder,
        PermitVerifier(trust, leeway=leeway),
        store,
        audit,
        replay=state,
        ledger=state,
    )
    return PermitGuardAuthorizer(guard, refusal)


class PermitRequestSigner:
    """Signs ``permits.request`` proofs with the data user's (authorised person's) key.

    ``ttl`` defaults to the longest window ``permits`` accepts (300 s): a
    request is signed when the round is configured, and a deployed SuperNode
    may pick it up only after its poll interval plus a ClientApp start-up.
    """

    def __init__(self, key_path: str, permit_token: str, ttl: int = 300) -> None:
        self.key = load_jwk(Path(key_path))
        plan = read_permit(permit_token)
        self.jti = plan.jti
        self.permit_hash = plan.permit_hash
        self.ttl = ttl

    def sign(self, *, holder: str, operation: str, params: Mapping[str, Any]) -> str:
        return make_request(
            self.key,
            permit=self.jti,
            permit_hash=self.permit_hash,
            holder=holder,
            op=operation,  # type: ignore[arg-type]
            params=dict(params),
            ttl=self.ttl,
        )


def request_signer(*, key_path: str, permit_token: str, ttl: int = 300) -> PermitRequestSigner:
    return PermitRequestSigner(key_path, permit_token, ttl)


# -------------------------------------------------------------------- data sources


class ArraySource:
    """Features already computed into an ``.npz`` (``X``, ``y``, ``feature_names``).

    For benchmarks and tests of the federated mechanics; it still checks that
    the coordinator's spec is the one the permit pinned and that the columns
    are the spec's features, so it cannot be used to train on something else.
    ``patient_keys`` (optional in the file) name each row's patient; without
    them every row counts as its own patient.
    """

    def __init__(self, path: str, dataset: str | None = None) -> None:
        self.path = path
        self.dataset = dataset

    def version(self, spec_hash: str, time_range: tuple[str, str] | None = None) -> str:
        return cache_key(spec_hash, snapshot_version(self.path), "none", time_range)

    def load(
        self,
        spec: Mapping[str, Any],
        *,
        spec_hash: str,
        time_range: tuple[str, str] | None = None,
    ) -> SiteDataset:
        """Rows are filtered by ``time_range`` when the file has a ``dates`` column.

        Precomputed features without dates (benchmarks) were cut to the permit's
        range by whoever computed them; the ClientApp still counts nothing as excluded.
        """
        if trust.spec_hash(spec) != spec_hash:
            raise AccessDeniedError(
                "spec document does not match its hash", reason="spec_hash_mismatch"
            )
        with np.load(self.path, allow_pickle=False) as data:
            X = np.asarray(data["X"], dtype=np.float32)
            y = np.asarray(data["y"])
            names = tuple(str(n) for n in data["feature_names"])
            dates = np.asarray(data["dates"]).astype("U10") if "dates" in data.files else None
            keys = (
                tuple(str(k) for k in data["patient_keys"])
                if "patient_keys" in data.files
                else tuple(f"row-{i}" for i in range(X.shape[0]))
            )
        if list(names) != list(spec.get("features", [])):
            raise JobConfigError("site columns differ from the spec's features")
        excluded = 0
        if time_range is not None and dates is not None:
            keep = (dates >= time_range[0]) & (dates <= time_range[1])
            excluded = int((~keep).sum())
            X, y = X[keep], y[keep]
            keys = tuple(k for k, kept in zip(keys, keep, strict=True) if kept)
        return SiteDataset(
            X=X,
            y=y,
            feature_names=names,
            patients=int(X.shape[0]),
            excluded_time_range=excluded,
            patient_keys=keys,
        )


def array_source(path: str, dataset: str | None = None) -> ArraySource:
    return ArraySource(path, dataset)


class FhirSource:
    """Features computed at the site from its FHIR data with the permit's feature spec.

    ``path`` is an NDJSON file or folder, a Bundle, or anything
    ``fhir_adapters.stream.ResourceStream`` reads; ``opt_out`` an optional file
    of opted-out patient keys (one per line), applied before any feature is
    computed (read by ``fhir_adapters.optout_file``: ids, ``Patient/<id>``, Consent). The spec document the coordinator sent is re-hashed here: a spec
    whose canonical hash is not the permit's is refused before reading data.
    ``cache_dir`` (under the site's data dir) keeps computed rows on disk per
    (spec hash, snapshot, opt-out version); see :mod:`federation.feature_cache`.
    """

    def __init__(
        self,
        path: str,
        opt_out: str | None = None,
        validate: str = "off",
        dataset: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.path = path
        self.opt_out = opt_out
        self.validate = validate
        self.dataset = dataset
        self.cache_dir = cache_dir

    def version(self, spec_hash: str, time_range: tuple[str, str] | None = None) -> str:
        """Changes with the spec, the FHIR snapshot, the opt-out registry and the time range."""
        return cache_key(
            spec_hash, snapshot_version(self.path), registry_version(self.opt_out), time_range
        )

    def load(
        self,
        spec: Mapping[str, Any],
        *,
        spec_hash: str,
        time_range: tuple[str, str] | None = None,
    ) -> SiteDataset:
        from fhir_adapters.features import FeatureSpec, extract_features
        from fhir_adapters.optout_file import read_opt_out
        from fhir_adapters.stream import ResourceStream
        from fhir_adapters.timerange import FilteredStream, TimeRangeFilter
        from permits.optout import ConsentOptOutRegistry

        try:
            feature_spec = FeatureSpec.from_dict(spec)
        except Exception as exc:
            raise AccessDeniedError("feature spec is not valid", reason="spec_invalid") from exc
        if feature_spec.canonical_hash() != spec_hash:
            raise AccessDeniedError(
                "spec document does not match its hash", reason="spec_hash_mismatch"
            )
        cache = FeatureCache(self.cache_dir) if self.cache_dir else None
        key = self.version(spec_hash, time_range) if cache is not None else ""
        if cache is not None and (hit := cache.get(key)) is not None:
            return replace(hit, extra={**hit.extra, "cache_hit": 1})
        registry = None
        if self.opt_out is not None:
            registry = read_opt_out(self.opt_out, ConsentOptOutRegistry.from_resources)
        stream: Any = ResourceStream(
            [self.path],
            validate=self.validate,
            fhir_version=feature_spec.fhir_version,
            validate_types=feature_spec.resource_types(),
        )
        time_filter = TimeRangeFilter.from_iso(*time_range) if time_range is not None else None
        if time_filter is not None:  # records outside the permit's time_range are never read
            stream = FilteredStream(stream, time_filter)
        matrix = extract_features(feature_spec, stream, opt_out=registry)
        if matrix.y is None:
            raise JobConfigError("the feature spec defines no label")
        keep = ~np.isnan(matrix.y)
        data = SiteDataset(
            X=np.asarray(matrix.X[keep], dtype=np.float32),
            y=np.asarray(matrix.y[keep], dtype=np.float32),
            feature_names=tuple(matrix.feature_names),
            patients=int(matrix.report.patients),
            excluded_opt_out=int(matrix.report.excluded_opt_out),
            quarantined=int(matrix.report.quality.problems),
            extra={"feature_warnings": len(matrix.report.warnings)},
            excluded_time_range=time_filter.excluded if time_filter is not None else 0,
            patient_keys=tuple(
                k for k, kept in zip(matrix.patient_keys, keep, strict=True) if kept
            ),
        )
        if cache is not None:
            cache.put(key, data)
        return data


def fhir_source(
    path: str,
    opt_out: str | None = None,
    validate: str = "off",
    dataset: str | None = None,
    cache_dir: str | None = None,
) -> FhirSource:
    return FhirSource(path, opt_out, validate, dataset, cache_dir)


def spec_feature_names(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Column names a FeatureSpec document yields (what the coordinator's model expects)."""
    from fhir_adapters.features import FeatureSpec

    return tuple(FeatureSpec.from_dict(spec).feature_names)


def spec_hash_of(spec: Mapping[str, Any]) -> str:
    from fhir_adapters.features import FeatureSpec

    return str(FeatureSpec.from_dict(spec).canonical_hash())
