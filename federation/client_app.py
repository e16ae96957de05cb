"""The ClientApp each data holder runs (Flower Message API).

Order of a request, each step fail-closed and audited at the site:

1. check the permit and the coordinator's signed request (``Authorizer``, i.e.
   ``permits.PermitGuard``) - before any data is read; a refusal records
   ``access.denied`` and the reply carries only the reason code;
2. check the site's dataset is one the permit names, then compute features
   with the permit's feature specification from the site's configured source,
   reading only records dated inside the permit's ``time_range``
   (``data.extracted`` with counts, the spec hash and ``excluded_time_range``);
3. enforce the permit's minimum rows per site and per leaf;
4. train on top of the global model and send back only the new trees, with no
   per-node statistics (``training.round`` with the trees' hash), or evaluate
   the global model and send back only permitted metrics.

The site's configuration comes from ``Context.node_config["site-config"]`` (a
JSON file at the site) in deployment; simulation maps ``partition-id`` to the
job's list of sites (see :func:`make_client_app`).
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from federation import site as site_ops
from federation import trees, wire
from federation.errors import AccessDeniedError, FederationError, JobConfigError
from federation.job import BoosterParams, SiteConfig
from federation.ports import AccessTerms, AuditSink, Authorizer, SiteDataset, SiteDataSource
from federation.timeline import mark

_log = logging.getLogger(__name__)
SiteResolver = Callable[[Context], SiteConfig]
_CODE = re.compile(r"[^a-z0-9_.:-]+")
_CACHE_SIZE = 8
_AUDITED_REFUSALS = frozenset(
    {"min_rows_per_site", "min_rows_per_leaf", "max_depth_exceeded", "dataset_not_permitted"}
)
# Per-process cache of extracted features: a Ray actor or the site's executor
# serves many rounds, and re-reading features every round would dominate the run
# time. The key holds the source's version (spec hash, data snapshot, opt-out
# registry version; see federation.feature_cache), so a new snapshot or a new
# opt-out is a miss. A source without a version is read afresh every time.
_FEATURES: OrderedDict[tuple[str, str], SiteDataset] = OrderedDict()
# (site, job, version) whose ``data.extracted`` this process has written: every
# job records its own extraction, cached or not, once.
_EXTRACTED: OrderedDict[tuple[str, str, str], None] = OrderedDict()


def reason_of(exc: BaseException) -> str:
    """A stable, schema-valid reason code for an exception (never its message)."""
    for attr in ("reason", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            code = _CODE.sub("_", value.lower()).strip("_")[:64]
            if code:
                return code
    return "internal_error"


def site_from_node_config(context: Context) -> SiteConfig:
    """Deployment: the SuperNode was started with ``--node-config site-config=...``."""
    path = context.node_config.get("site-config")
    if not isinstance(path, str) or not path:
        raise JobConfigError("SuperNode has no 'site-config' in its node config")
    return SiteConfig.from_file(path)


class SimulationSites:
    """Simulation: virtual SuperNode ``partition-id`` i is ``sites[i]``."""

    def __init__(self, sites: Sequence[SiteConfig]) -> None:
        self.sites = tuple(sites)

    def __call__(self, context: Context) -> SiteConfig:
        index = context.node_config.get("partition-id")
        if not isinstance(index, int) or not 0 <= index < len(self.sites):
            raise JobConfigError("partition-id does not name a configured site")
        return self.sites[index]


def check_dataset(source: object, terms: AccessTerms) -> None:
    """The site's dataset must be one the permit names for this holder.

    A source that declares no dataset is accepted only when the permit names
    exactly one: then there is nothing else the site's data could be.
    """
    if not terms.datasets:
        return
    declared = getattr(source, "dataset", None)
    if declared is None and len(terms.datasets) == 1:
        return
    if declared not in terms.datasets:
        raise AccessDeniedError(
            "the site's dataset is not named in the permit", reason="dataset_not_permitted"
        )


def _load_features(
    site: SiteConfig,
    spec: Mapping[str, Any],
    spec_hash: str,
    audit: AuditSink,
    subject: Mapping[str, str],
    terms: AccessTerms,
) -> SiteDataset:
    source: SiteDataSource = site.data.build()
    check_dataset(source, terms)
    version_of = getattr(source, "version", None)
    version = (
        str(version_of(spec_hash, terms.time_range)) if callable(version_of) else None
    )  # holds spec hash, snapshot, opt-out registry and the permit's time range
    recipe = orjson.dumps(site.data.to_dict(), option=orjson.OPT_SORT_KEYS).decode()
    key = (recipe, version or "")
    data = _FEATURES.get(key) if version is not None else None
    if data is None:
        data = source.load(spec, spec_hash=spec_hash, time_range=terms.time_range)
        if version is not None:
            _FEATURES[key] = data
            while len(_FEATURES) > _CACHE_SIZE:
                _FEATURES.popitem(last=False)
    else:
        _FEATURES.move_to_end(key)
    seen = (site.site_id, subject.get("job", ""), version or "")
    if version is None or seen not in _EXTRACTED:
        audit.record(
            "data.extracted",
            subject=subject,
            details={
                "spec_hash": spec_hash,
                "patients": int(data.patients),
                "rows": int(data.rows),
                "features": len(data.feature_names),
                "excluded_opt_out": int(data.excluded_opt_out),
                "quarantined": int(data.quarantined),
                "feature_warnings": int(data.extra.get("feature_warnings", 0)),
                "excluded_time_range": int(data.excluded_time_range),
            },
        )
        _EXTRACTED[seen] = None
        while len(_EXTRACTED) > 64:
            _EXTRACTED.popitem(last=False)
    return data


def _config(msg: Message) -> ConfigRecord:
    record = msg.content.config_records.get(wire.JOB)
    if record is None:
        raise JobConfigError("message has no job configuration")
    return record


def _str(cfg: ConfigRecord, key: str) -> str:
    value = cfg.get(key)
    if not isinstance(value, str):
        raise JobConfigError(f"job configuration lacks {key}")
    return value


def _check_terms(terms: AccessTerms, cfg: ConfigRecord, operation: str, spec_hash: str) -> None:
    """Defence in depth: the guard checked these; a custom Authorizer might not."""
    if operation not in terms.operations:
        raise AccessDeniedError("operation not permitted", reason="operation_not_permitted")
    if terms.spec_hash != spec_hash:
        raise AccessDeniedError("feature spec differs from the permit", reason="spec_hash_mismatch")
    strategy = cfg.get("strategy")
    if operation == "train" and strategy not in terms.strategies:
        raise AccessDeniedError("strategy not permitted", reason="strategy_not_permitted")
    rnd = cfg.get("round")
    if not isinstance(rnd, int) or not 1 <= rnd <= terms.max_rounds:
        raise AccessDeniedError("round outside the permit's bounds", reason="max_rounds_exceeded")


def handle(
    msg: Message,
    context: Context,
    operation: str,
    resolve: SiteResolver,
    app: Mapping[str, str] | None = None,
) -> Message:
    """Serve one train/evaluate request; every outcome is a reply, never a traceback.

    ``app`` is the run's app as the site's executor observed it
    (:meth:`federation.app_trust.AppManifest.observation`); when given, the
    authorizer checks it against the permit's ``processing.app`` before anything else.
    """
    site = resolve(context)
    audit: AuditSink = site.audit.build()
    try:
        return _handle(msg, operation, site, audit, app)
    finally:
        close = getattr(audit, "close", None)
        if callable(close):
            close()


def _handle(
    msg: Message,
    operation: str,
    site: SiteConfig,
    audit: AuditSink,
    app: Mapping[str, str] | None = None,
) -> Message:
    subject: dict[str, str] = {"site": site.site_id}
    app_details = {"app_digest": app["digest"]} if app is not None else {}
    try:
        cfg = _config(msg)
        subject["job"] = _str(cfg, "job-id")
        spec_hash = _str(cfg, "spec-hash")
        params = BoosterParams(**_params(cfg))
        requests = orjson.loads(_str(cfg, "requests"))
        token = requests.get(site.site_id) if isinstance(requests, dict) else None
        if not isinstance(token, str):
            raise AccessDeniedError("no request for this site", reason="request_not_for_holder")
        authorizer: Authorizer = site.authorizer.build(audit=audit)
        access = wire.access_params(operation, params, spec_hash, _str(cfg, "strategy"))
        if app is None:
            terms = authorizer.authorize(
                _str(cfg, "permit"), token, operation=operation, params=access
            )
        else:
            terms = authorizer.authorize(
                _str(cfg, "permit"), token, operation=operation, params=access, app=app
            )
        _check_terms(terms, cfg, operation, spec_hash)
        mark("permit_check")
    except Exception as exc:
        reason = reason_of(exc)
        if not getattr(exc, "recorded", False):
            audit.record(
                "access.denied",
                subject=subject,
                details={"reason": reason, "operation": operation, **app_details},
            )
        return wire.site_reply(msg, site_id=site.site_id, error=reason)
    subject["permit"] = terms.permit_jti
    try:
        global_pack = trees.decode_pack(wire.pack_bytes(msg.content, wire.GLOBAL))
        if (global_pack["objective"], global_pack["num_class"]) != (
            params.objective,
            params.num_class,
        ):
            raise JobConfigError("global model and parameters disagree on the task")
        spec = orjson.loads(_str(cfg, "spec"))
        data = _load_features(site, spec, spec_hash, audit, subject, terms)
        site_ops.check_site_rows(data, terms)
        mark("feature_load")
        fraction = cfg.get("eval-fraction")
        split_key = cfg.get("split-key")
        split = site_ops.split_rows(
            data,
            float(fraction) if isinstance(fraction, float) else 0.0,
            split_key if isinstance(split_key, str) and split_key else subject["job"],
        )
        if operation == "train":
            return _train(
                msg, site.site_id, audit, subject, cfg, data, split, global_pack, params, terms
            )
        rows = split.evaluate if split.evaluate.size else split.train
        metrics = site_ops.evaluate_pack(data, rows, global_pack, terms)
        mark("evaluation")
        return wire.site_reply(msg, site_id=site.site_id, metrics=metrics)
    except FederationError as exc:
        reason = reason_of(exc)
        if exc.reason in _AUDITED_REFUSALS:
            details: dict[str, object] = {"reason": reason, "operation": operation}
            if terms.requester is not None:
                details["requester"] = terms.requester
            audit.record("access.denied", subject=subject, details=details)
        return wire.site_reply(msg, site_id=site.site_id, error=reason)
    except Exception as exc:  # fail closed with a code, no message leaves the site
        _log.warning(
            "site %s: %s failed: %s",
            site.site_id,
            operation,
            type(exc).__name__,
            exc_info=bool(os.environ.get("EHDS_DEBUG")),
        )
        return wire.site_reply(msg, site_id=site.site_id, error=reason_of(exc))


def _params(cfg: ConfigRecord) -> dict[str, Any]:
    raw = orjson.loads(_str(cfg, "params"))
    if not isinstance(raw, dict):
        raise JobConfigError("params must be an object")
    raw["base_score"] = tuple(raw.get("base_score", ()))
    return raw


def _train(
    msg: Message,
    site_id: str,
    audit: AuditSink,
    subject: Mapping[str, str],
    cfg: ConfigRecord,
    data: SiteDataset,
    split: site_ops.Split,
    global_pack: trees.Pack,
    params: BoosterParams,
    terms: AccessTerms,
) -> Message:
    new = site_ops.train_round(data, split.train, global_pack, params, terms)
    mark("training")
    encoded = trees.encode_pack(new)
    rnd = cfg.get("round")
    audit.record(
        "training.round",
        subject=subject,
        details={
            "round": int(rnd) if isinstance(rnd, int) else 0,
            "model_hash": trees.pack_hash(new),
            "rows": int(split.train.size),
            "bytes_sent": len(encoded),
            "trees": len(new["trees"]),
        },
    )
    metrics = {"num-examples": float(split.train.size), "trees": float(len(new["trees"]))}
    return wire.site_reply(msg, site_id=site_id, encoded=encoded, metrics=metrics)


def make_client_app(
    resolve: SiteResolver = site_from_node_config, app: Mapping[str, str] | None = None
) -> ClientApp:
    """A ClientApp bound to a way of finding the site's configuration (and the run's app)."""
    client = ClientApp()

    @client.train()
    def _train_handler(msg: Message, context: Context) -> Message:
        return handle(msg, context, "train", resolve, app)

    @client.evaluate()
    def _evaluate_handler(msg: Message, context: Context) -> Message:
        return handle(msg, context, "evaluate", resolve, app)

    return client


app = make_client_app()
