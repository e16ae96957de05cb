"""``ehds demo``: the whole flow on embedded defaults, in one process tree.

Two HDABs (Estonia lead, Finland co-issuer) co-sign a cross-border permit for
three hospitals; each hospital's synthetic FHIR cohort is turned into features
under the permit (opt-outs applied) and federated XGBoost runs on Flower's
simulation engine; a request for more rounds than permitted is refused and
audited; the audit chain is verified end to end; an HTML report is written.

Everything here is SQLite, files and loopback: nothing to install or start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from gateway.report import ReportData, RocCurve, write_report

#: Three hospitals in two countries: Estonia (R5 national profiles) and Finland.
SITES = ("ee-tartu-uh", "ee-north-estonia-mc", "fi-hus-helsinki")
HDABS = (("hdab-ee", "EE"), ("hdab-fi", "FI"))
MAX_ROUNDS = 8
#: The training job's id (also its held-out split key) and its held-out share of patients.
JOB_ID = "demo-train"
EVAL_FRACTION = 0.2


@dataclass
class DemoResult:
    out_dir: Path
    report: Path
    audit_ok: bool
    audit_size: int
    federated_auc: float
    centralized_auc: float
    local_aucs: dict[str, float]
    refused_reason: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "report": str(self.report),
            "audit_ok": self.audit_ok,
            "audit_size": self.audit_size,
            "federated_auc": round(self.federated_auc, 4),
            "centralized_auc": round(self.centralized_auc, 4),
            "local_aucs": {k: round(v, 4) for k, v in self.local_aucs.items()},
            "refused_reason": self.refused_reason,
            "seconds": round(self.seconds, 1),
        }


def _fit_predict(
    X: np.ndarray, y: np.ndarray, Xt: np.ndarray, rounds: int, depth: int
) -> np.ndarray:
    import xgboost as xgb

    booster = xgb.train(
        {
            "objective": "binary:logistic",
            "max_depth": depth,
            "eta": 0.1,
            "min_child_weight": 5,
            "nthread": 1,
        },
        xgb.DMatrix(X, label=y),
        num_boost_round=rounds,
    )
    return np.asarray(booster.predict(xgb.DMatrix(Xt)))


def _curve(label: str, y: np.ndarray, p: np.ndarray, dashed: bool = False) -> RocCurve:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    return RocCurve(label, fpr.tolist(), tpr.tolist(), float(roc_auc_score(y, p)), dashed)


def _permit(
    world: Path, spec_hash: str, sites: tuple[str, ...]
) -> tuple[str, Any, Path, Path, Path, list[Any]]:
    """Two HDABs co-sign one cross-border permit; files as each site receives them."""
    from permits import TrustList, trusted_key
    from permits.model import Permit
    from permits.signing import cosign_permit, sign_permit
    from permits.statuslist import StatusEntry, build_status_list, sign_status_list
    from trust import generate_jwk as generate_key
    from trust import thumbprint

    world.mkdir(parents=True, exist_ok=True)
    hdab_keys = [generate_key() for _ in HDABS]
    user_key = generate_key()
    now = int(time.time())
    country = {"ee": "EE", "fi": "FI"}
    permit = Permit.model_validate(
        {
            "jti": "permit-ee-fi-2026-001",
            "iss": {"id": HDABS[0][0], "country": HDABS[0][1]},
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 365 * 86400,
            "version": 1,
            "holder_of_permit": {
                "id": "tartu-univ-research",
                "name": "University of Tartu, Institute of Genomics",
                "country": "EE",
                "sector": "public",
                "kid": thumbprint(user_key),
            },
            "purpose": {
                "codes": ["e.ii"],
                "description": "Training and evaluation of a type 2 diabetes risk model.",
            },
            "data": [
                {
                    "holder": h,
                    "datasets": ["ehr-primary-care"],
                    "feature_spec_hash": spec_hash,
                    "time_range": {"start": "2015-01-01", "end": "2026-12-31"},
                    "form": "pseudonymised",
                }
                for h in sites
            ],
            "processing": {
                "operations": ["train", "evaluate"],
                "federated_xgboost": {
                    "strategies": ["bagging", "cyclic"],
                    "max_rounds": MAX_ROUNDS,
                    "max_depth": 4,
                    "min_rows_per_site": 50,
                    "min_rows_per_leaf": 5,
                    "outputs": ["model", "aggregate_metrics"],
                },
            },
            "opt_out": {"applied": True},
            "spe": {"id": "spe-ee-federated"},
            "cross_border": {"lead": HDABS[0][0], "co_issuers": [HDABS[1][0]]},
        }
    )
    token = cosign_permit(sign_permit(permit, [hdab_keys[0]]), hdab_keys[1])
    trust = TrustList(
        [trusted_key(k, hid, c) for k, (hid, c) in zip(hdab_keys, HDABS, strict=True)]
    )
    trust_path = world / "trust_list.json"
    trust_path.write_bytes(orjson.dumps(trust.to_dict()))
    entry = StatusEntry(status="valid", version=1, hash=permit.permit_hash(), reason=None)
    # every HDAB that signed may revoke: each site holds both HDABs' status lists
    status_path = world / "status_lists"
    status_path.mkdir(exist_ok=True)
    for key, (hid, _c) in zip(hdab_keys, HDABS, strict=True):
        status = build_status_list(hid, 1, now - 5, {permit.jti: entry})
        (status_path / f"{hid}.jws").write_text(sign_status_list(status, key))
    user_path = world / "researcher_key.jwk"
    user_path.write_text(user_key.export_private())
    user_path.chmod(0o600)
    (world / "permit.jws").write_text(token)
    del country
    return token, permit, trust_path, status_path, user_path, hdab_keys


def _forbidden_request(
    *,
    site: str,
    token: str,
    spec_hash: str,
    rounds: int,
    trust_path: Path,
    status_path: Path,
    user_path: Path,
    audit_db: str,
    audit_key: Path,
    state_db: Path,
) -> str:
    """The researcher asks a hospital for more rounds than the permit allows.

    It goes through the same ``PermitGuard`` the ClientApp uses, with a request the
    researcher really signed, so the refusal is the site's own audited decision.
    """
    from federation.adapters import permit_guard, request_signer, signed_log_sink
    from federation.errors import AccessDeniedError

    params = {
        "spec_hash": spec_hash,
        "rounds": rounds,
        "max_depth": 4,
        "min_child_weight": 5,
        "strategy": "bagging",
    }
    sink = signed_log_sink(audit_db, str(audit_key))
    try:
        guard = permit_guard(
            holder=site,
            trust_list=str(trust_path),
            status_list=str(status_path),
            state_db=str(state_db),
            audit=sink,
        )
        request = request_signer(key_path=str(user_path), permit_token=token).sign(
            holder=site, operation="train", params=params
        )
        try:
            guard.authorize(token, request, operation="train", params=params)
        except AccessDeniedError as exc:
            return str(exc.reason)
        return "NOT REFUSED"
    finally:
        sink.close()


async def _pull_all(
    hospital_fhir: dict[str, Path], out_root: Path
) -> tuple[dict[str, Path], dict[str, int]]:
    """Start one FHIR server per hospital on loopback and export each into its gateway's folder.

    The server stands in for the hospital's EHR FHIR endpoint (a real one is HAPI, Epic, ...):
    the gateway side is the production Bulk Data client.
    """
    from fhir_adapters.sources import BulkExporter, ExportRequest, FhirClient
    from fhir_adapters.testing.fhir_test_server import FhirTestServer, ServerConfig

    dirs: dict[str, Path] = {}
    counts: dict[str, int] = {}
    for name, folder in hospital_fhir.items():
        target = out_root / name
        async with (
            FhirTestServer(ServerConfig(ndjson_dir=folder)) as srv,
            FhirClient(srv.base_url) as client,
        ):
            result = await BulkExporter(client, concurrency=3, poll_floor=0.1).run(
                ExportRequest(), target, restart=True
            )
        dirs[name] = target
        counts[name] = int(result.resources)
    return dirs, counts


def run_demo(
    out_dir: Path,
    *,
    patients: int = 3000,
    rounds: int = 5,
    seed: int = 7,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run every step; ``say`` receives one progress line per step."""
    from audit_chain import EventSigner, TrustStore
    from audit_chain.log import AuditLog
    from audit_chain.verify import verify_log
    from federation.adapters import spec_hash_of
    from federation.job import BoosterParams
    from federation.jobs import local_fhir_job, signed_audit
    from federation.reference import pooled_held_out, reference_site
    from federation.run import train
    from fhir_adapters.features import FeatureSpec
    from fhir_adapters.testing.synthetic import CohortConfig, synthetic_spec_document, write_ndjson

    started = time.perf_counter()
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    say(f"1/7 synthetic FHIR R4 cohorts: {patients} patients across {len(SITES)} hospitals")
    folders = write_ndjson(
        CohortConfig(n_patients=patients, n_sites=len(SITES), seed=seed), out_dir / "fhir"
    )
    hospital_fhir = {}
    for name, folder in zip(SITES, folders, strict=True):
        target = folder.with_name(name)
        if target.exists():
            import shutil

            shutil.rmtree(target)
        folder.rename(target)
        hospital_fhir[name] = target

    say("    each hospital serves its cohort on a local FHIR endpoint; its gateway pulls $export")
    site_dirs, pulled = asyncio.run(_pull_all(hospital_fhir, out_dir / "pulled"))
    for name, count in pulled.items():
        say(f"    {name}: {count} resources pulled through Bulk Data $export")

    spec_doc = synthetic_spec_document()
    spec_hash = spec_hash_of(spec_doc)
    (out_dir / "feature_spec.json").write_bytes(orjson.dumps(spec_doc, option=orjson.OPT_INDENT_2))

    say("2/7 HDAB Estonia (lead) and HDAB Finland co-sign a cross-border permit")
    token, permit, trust_path, status_path, user_path, _ = _permit(
        out_dir / "permit", spec_hash, SITES
    )

    say("3/7 audit chains: each hospital and the coordinator keep their own signed log")
    audit_dir = out_dir / "audit"
    audit_dir.mkdir(exist_ok=True)

    def audit_url(actor: str) -> str:
        return f"sqlite:///{audit_dir / (actor + '.sqlite')}"

    keys_dir = out_dir / "keys"
    keys_dir.mkdir(exist_ok=True)
    trust = TrustStore([])
    actors = [*SITES, "coordinator"]
    for actor in [*actors, *(hdab for hdab, _ in HDABS)]:
        signer = EventSigner.generate(actor)
        (keys_dir / f"{actor}.json").write_text(orjson.dumps(signer.to_json()).decode())
        trust.add(actor, signer.to_json()["jwk"], signer.to_json().get("alg"))
        # public part only goes to the trust store
    trust_store_path = out_dir / "audit_trust.json"
    trust.save(trust_store_path)

    def job(n_rounds: int, job_id: str) -> Any:
        return local_fhir_job(
            job_id=job_id,
            workdir=out_dir / "work",
            site_sources=site_dirs,
            spec=spec_doc,
            permit_token=token,
            user_key=user_path,
            trust_list=trust_path,
            status_list=status_path,
            site_audit={s: signed_audit(audit_url(s), keys_dir / f"{s}.json") for s in SITES},
            coordinator_audit=signed_audit(audit_url("coordinator"), keys_dir / "coordinator.json"),
            rounds=n_rounds,
            params=BoosterParams(max_depth=4, min_child_weight=5),
            eval_fraction=EVAL_FRACTION,
        )

    say(f"4/7 federated XGBoost (bagging), {rounds} rounds on Flower's simulation engine")
    result = train(
        job(rounds, JOB_ID),
        engine="simulation",
        progress=lambda r: say(f"    round {r.round}: sites {', '.join(r.sites)}"),
    )
    if result.status != "completed":
        raise RuntimeError(f"federated training failed: {result.error_code}")

    say(f"5/7 a forbidden request: {MAX_ROUNDS + 4} rounds where the permit allows {MAX_ROUNDS}")
    refused_reason = _forbidden_request(
        site=SITES[0],
        token=token,
        spec_hash=spec_hash,
        rounds=MAX_ROUNDS + 4,
        trust_path=trust_path,
        status_path=status_path,
        user_path=user_path,
        audit_db=audit_url(SITES[0]),
        audit_key=keys_dir / f"{SITES[0]}.json",
        state_db=out_dir / "work" / "sites" / SITES[0] / "guard.db",
    )
    say(f"    {SITES[0]}'s PermitGuard refused it: {refused_reason} (written to its audit log)")

    say("6/7 verifying every audit chain end to end")
    trust = TrustStore.load(trust_store_path)
    events: dict[str, int] = {}
    size = 0
    verdicts = []
    checkpoints = {}
    for actor in actors:
        log = AuditLog.open(audit_url(actor), signer=EventSigner.load(keys_dir / f"{actor}.json"))
        checkpoints[actor] = log.checkpoint().to_json()
        verdict = verify_log(log, trust, log_org=actor)
        verdicts.append((actor, verdict))
        for entry in log.entries():
            events[entry.type] = events.get(entry.type, 0) + 1
        size += log.size()
        log.close()
        say(f"    {actor}: {'verified' if verdict.ok else 'FAILED: ' + str(verdict.reason)}")
    say("    the HDABs log the permit; all six organisations witness each other's logs (C2SP)")
    from gateway.demo_witnessing import record_permit_decisions, witness_each_other

    hdab_ids = [hdab for hdab, _ in HDABS]
    record_permit_decisions(
        audit_url,
        keys_dir,
        hdab_ids,
        {"jti": permit.jti, "permit_hash": permit.permit_hash(), "version": permit.version},
    )
    witnessed = witness_each_other(audit_url, keys_dir, [*hdab_ids, *actors], trust, say=say)
    audit_ok = all(v.ok for _, v in verdicts) and all(w.report.ok for w in witnessed)
    provenance = _provenance(result, trust, audit_url, hdab_ids[0], say)
    say(
        f"    {size} entries in {len(actors)} logs, {'all verified' if audit_ok else 'NOT verified'}"
    )

    say("7/7 reference models and the report")
    spec = FeatureSpec.from_dict(spec_doc)
    # Every model is scored on the same held-out patients, which no model trained on:
    # the federated job's own patient-level split (same code path as each site's).
    refs = {
        site: reference_site(
            folder,
            spec_doc,
            spec_hash,
            split_key=JOB_ID,
            eval_fraction=EVAL_FRACTION,
            cache_dir=out_dir / "work" / "sites" / site / "features",
        )
        for site, folder in site_dirs.items()
    }
    Xt_all, yt_all = pooled_held_out(refs)
    curves: list[RocCurve] = []
    quality: list[dict[str, Any]] = []
    local_aucs: dict[str, float] = {}
    for site, ref in refs.items():
        X, y = ref.train
        c = _curve(
            f"local only: {site}", yt_all, _fit_predict(X, y, Xt_all, rounds * 3, 4), dashed=True
        )
        local_aucs[site] = c.auc
        curves.append(c)
        quality.append(
            {
                "site": site,
                "patients": ref.data.patients,
                "positives": int(np.nansum(ref.data.y)),
                "held out": int(ref.split.evaluate.size),
                "excluded (opt-out)": int(ref.data.excluded_opt_out),
                "quality problems": int(ref.data.quarantined),
                "features": len(ref.data.feature_names),
            }
        )
    Xall = np.vstack([r.train[0] for r in refs.values()])
    yall = np.concatenate([r.train[1] for r in refs.values()])
    central = _curve(
        "centralized reference (pooled, not allowed in practice)",
        yt_all,
        _fit_predict(Xall, yall, Xt_all, rounds * 3, 4),
    )
    fed_pred = _predict_model(result.model_ubj, Xt_all, spec.feature_names)
    federated = _curve("federated (bagging, this run)", yt_all, fed_pred)
    curves = [federated, central, *curves]

    report = write_report(
        ReportData(
            title="EHDS Gateway demo: cross-border federated diabetes risk model",
            generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
            summary=[
                ("permit", f"{permit.jti} (lead {HDABS[0][0]}, co-signed by {HDABS[1][0]})"),
                ("hospitals", ", ".join(SITES)),
                ("federated AUC", f"{federated.auc:.3f}"),
                ("centralized reference AUC", f"{central.auc:.3f}"),
                ("local-only mean AUC", f"{np.mean(list(local_aucs.values())):.3f}"),
                (
                    "evaluation",
                    f"all models on the same {len(yt_all)} held-out patients "
                    f"({EVAL_FRACTION:.0%} per site, patient-level split keyed by the job id)",
                ),
                ("audit chains", "all verified" if audit_ok else "FAILED"),
            ],
            curves=curves,
            permit=orjson.loads(permit.model_dump_json()),
            audit=[
                ("entries (all logs)", str(size)),
                *[
                    (
                        f"{actor}",
                        f"{'verified' if v.ok else f'{v.reason} at {v.index}'}; checkpoint size "
                        f"{checkpoints[actor].get('size')} root {checkpoints[actor].get('root')}",
                    )
                    for actor, v in verdicts
                ],
            ],
            audit_events=events,
            cosignatures=[w.row() for w in witnessed],
            provenance=provenance,
            quality=quality,
            training=[
                ("engine", "Flower simulation"),
                ("strategy", result.strategy),
                ("rounds", str(len(result.rounds))),
                ("contributing sites", ", ".join(result.contributing_sites)),
                ("failed sites", ", ".join(result.failed_sites) or "none"),
                ("model hash", str(result.model_hash)),
                ("model card", _relative(result.model_card, out_dir)),
            ],
            refusals=[
                ("request", f"{MAX_ROUNDS + 4} rounds (permit allows {MAX_ROUNDS})"),
                ("decision", f"refused: {refused_reason}"),
            ],
        ),
        out_dir / "report.html",
    )
    return DemoResult(
        out_dir=out_dir,
        report=report,
        audit_ok=audit_ok,
        audit_size=size,
        federated_auc=federated.auc,
        centralized_auc=central.auc,
        local_aucs=local_aucs,
        refused_reason=str(refused_reason),
        seconds=time.perf_counter() - started,
    )


def _predict_model(model_path: str | None, X: np.ndarray, names: Any) -> np.ndarray:
    import xgboost as xgb

    if not model_path:
        raise RuntimeError("training produced no model")
    booster = xgb.Booster()
    booster.load_model(model_path)
    return np.asarray(booster.predict(xgb.DMatrix(X, feature_names=list(names))))


def _relative(path: str | None, folder: Path) -> str:
    """A file of the demo as a path relative to the report's folder: no local paths in the page."""
    if not path:
        return "none"
    p = Path(path)
    try:
        return str(p.resolve().relative_to(folder))
    except ValueError:
        return p.name


def _provenance(
    result: Any,
    trust: Any,
    audit_url: Callable[[str], str],
    hdab: str,
    say: Callable[[str], None],
) -> list[tuple[str, str]]:
    """Run ``ehds model verify``'s check on the released model, as a third party would.

    From the model file, its card and the HDAB's, coordinator's and hospitals' logs
    (each under its newest checkpoint, with inclusion proofs): which permit, which
    sites in which rounds, and that the released hash is the one logged.
    """
    from gateway.provenance import LogRef, ProvenanceError, verify_model

    if result.model_ubj is None or result.model_card is None:
        say("    model provenance: no model released, nothing to check")
        return [("result", "no model released")]
    card = orjson.loads(Path(result.model_card).read_bytes())
    try:
        checked = verify_model(
            result.model_ubj,
            card,
            trust=trust,
            hdab=LogRef(hdab, audit_url(hdab)),
            coordinator=LogRef("coordinator", audit_url("coordinator")),
            sites=[LogRef(site, audit_url(site)) for site in result.contributing_sites],
        )
    except ProvenanceError as exc:
        say(f"    model provenance: FAILED [{exc.code}] {exc}")
        return [("result", f"FAILED [{exc.code}] {exc}")]
    say(f"    model provenance: {checked.model_hash} traced to permit {checked.permit}")
    return [
        ("result", "verified from the logs with inclusion proofs"),
        ("model hash", checked.model_hash),
        ("permit", f"{checked.permit} ({hdab} log entry {checked.permit_issued.index})"),
        ("released", f"coordinator log entry {checked.released.index}"),
        *[(f"round {r.round}", ", ".join(sorted(r.sites))) for r in checked.rounds],
    ]
