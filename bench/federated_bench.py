"""Federated XGBoost on the synthetic FHIR cohort: AUC, bytes, time per round.

Five non-IID sites from ``fhir_adapters.testing.synthetic`` (>= 20,000 patients; --quick
is smaller); each site computes its features from its own NDJSON with the
permit's feature spec. Evaluation: one patient-level held-out split
(:mod:`federation.holdout`, split key ``SPLIT_KEY``, ``EVAL_FRACTION`` of each
site's patients) shared by every job of the bench; every model - federated,
centralized, stock, each site alone - trains only on the other patients and is
scored on the same pooled held-out rows.

Rows: centralized XGBoost on pooled data (the baseline), federated bagging and
cyclic (ours, Flower Simulation Engine, permit-bound), Flower's stock
FedXgbBagging recipe on the same split (the peer to beat), each site alone and
the mean of those; bytes sent per site per round; wall time per round for the
Simulation and the Deployment engine. Ratios are against numbers measured in
this same run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import xgboost as xgb
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from federation.factory import FactoryRef  # noqa: E402
from federation.holdout import held_out  # noqa: E402
from federation.job import BoosterParams, SiteConfig, TrainingJob  # noqa: E402
from federation.reference import pooled_held_out, reference_site  # noqa: E402
from federation.run import quiet_environment, train  # noqa: E402
from federation.testing.devpermit import build_permit_world  # noqa: E402
from federation.testing.round_timeline import format_timelines, round_timelines  # noqa: E402
from fhir_adapters.features import FeatureSpec  # noqa: E402
from fhir_adapters.testing.synthetic import CohortConfig, synthetic_spec_document, write_ndjson  # noqa: E402

#: The bench's one held-out split: every job and every reference model share it.
SPLIT_KEY = "bench-holdout"
EVAL_FRACTION = 0.2


def auc(model: xgb.Booster, X: np.ndarray, y: np.ndarray, names: list[str] | None) -> float:
    return float(roc_auc_score(y, model.predict(xgb.DMatrix(X, feature_names=names))))


def xgb_params(depth: int, eta: float, mcw: float) -> dict[str, Any]:
    return {
        "objective": "binary:logistic",
        "max_depth": depth,
        "eta": eta,
        "min_child_weight": mcw,
        "tree_method": "hist",
        "nthread": 1,
        "base_score": 0.5,
    }


def tuned_central(
    X: np.ndarray,
    y: np.ndarray,
    keys: list[str],
    names: list[str],
    depth: int,
    mcw: float,
    max_steps: int,
) -> dict[str, Any]:
    """Centralized XGBoost with eta and steps (<= ``max_steps``) chosen on held-out validation
    patients (a keyed split of the training patients), then refit on all training rows."""
    val = held_out(keys, "bench-validation", 0.2)
    dtr = xgb.DMatrix(X[~val], label=y[~val], feature_names=names)
    dva = xgb.DMatrix(X[val], label=y[val], feature_names=names)
    best: tuple[float, float, int] = (float("inf"), 0.3, max_steps)
    for eta in (0.05, 0.1, 0.3):
        booster = xgb.train(
            {**xgb_params(depth, eta, mcw), "eval_metric": "logloss"},
            dtr,
            max_steps,
            evals=[(dva, "val")],
            early_stopping_rounds=20,
            verbose_eval=False,
        )
        score = float(booster.best_score)
        if score < best[0]:
            best = (score, eta, int(booster.best_iteration) + 1)
    _, eta, steps = best
    model = xgb.train(
        xgb_params(depth, eta, mcw), xgb.DMatrix(X, label=y, feature_names=names), steps
    )
    return {"model": model, "choice": {"eta": eta, "steps": steps, "max_steps": max_steps}}


def shared_synthea() -> Path | None:
    """../shared/synthea next to the checkout (or under ``EHDS_SHARED_DIR``), if present."""
    for base in (
        os.environ.get("EHDS_SHARED_DIR"),
        ROOT.parent / "shared",
        ROOT.parents[1] / "shared",
    ):
        if base and (Path(base) / "synthea").is_dir():
            return Path(base) / "synthea"
    return None


def synthea_task(work: Path, bundles: Path, rounds: int) -> dict[str, Any]:
    """A second task not from our own generator: the Synthea R4 bundles dealt over 3 sites.

    Label: Prediabetes (``docs/examples/diabetes.spec.json``); features BMI, HbA1c,
    systolic BP, age, sex. 40 patients are tiny: the permit's floors are lowered to
    fit (5 rows per site; the leaf floor stays 5, the permit's minimum) and the held-out set is a few patients, so the
    AUCs are a smoke check of the pipeline on foreign data, not a quality claim.
    """
    from dataclasses import replace

    from federation.adapters import spec_hash_of
    from federation.jobs import local_fhir_job

    root = work / "synthea"
    sites = {f"synthea-site-{i}": root / f"site-{i}" for i in range(3)}
    for folder in sites.values():
        folder.mkdir(parents=True, exist_ok=True)
    folders = list(sites.values())
    for i, bundle in enumerate(sorted(bundles.glob("*.json"))):
        (folders[i % 3] / bundle.name).symlink_to(bundle)
    spec_doc = orjson.loads((ROOT / "docs" / "examples" / "diabetes.spec.json").read_bytes())
    spec_hash = spec_hash_of(spec_doc)
    key, fraction = "synthea-holdout", 0.3
    refs = {
        s: reference_site(f, spec_doc, spec_hash, split_key=key, eval_fraction=fraction)
        for s, f in sites.items()
    }
    X_test, y_test = pooled_held_out(refs)
    names = list(refs[next(iter(sites))].data.feature_names)
    out: dict[str, Any] = {
        "patients": sum(r.data.patients for r in refs.values()),
        "held_out": len(y_test),
        "held_out_positives": int(y_test.sum()),
    }
    permit = build_permit_world(
        root / "permit",
        holders=list(sites),
        spec_hash=spec_hash,
        min_rows_per_site=5,
        min_rows_per_leaf=5,
    )
    job = local_fhir_job(
        job_id="synthea-bagging",
        workdir=root / "work",
        site_sources=sites,
        spec=spec_doc,
        permit_token=permit.permit_token,
        user_key=permit.user_key,
        trust_list=permit.trust_list,
        status_list=permit.status_list,
        rounds=rounds,
        params=BoosterParams(max_depth=2, eta=0.3, min_child_weight=5),
        eval_fraction=fraction,
    )
    single_class = len(set(y_test.tolist())) < 2

    def score(model: xgb.Booster) -> float | None:
        return None if single_class else auc(model, X_test, y_test, names)

    params = xgb_params(2, 0.3, 5)
    X_all = np.vstack([r.train[0] for r in refs.values()])
    y_all = np.concatenate([r.train[1] for r in refs.values()])
    dall = xgb.DMatrix(X_all, label=y_all, feature_names=names)
    out["centralized_auc"] = score(xgb.train(params, dall, rounds * 3))
    out["local_auc"] = {
        s: score(xgb.train(params, xgb.DMatrix(*r.train, feature_names=names), rounds))
        for s, r in refs.items()
    }
    res = train(replace(job, split_key=key), engine="simulation")
    if res.status == "completed" and res.model_ubj:
        booster = xgb.Booster()
        booster.load_model(res.model_ubj)
        out["bagging_auc"] = score(booster)
    else:
        out["bagging_error"] = res.error_code
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cohort, few rounds")
    ap.add_argument("--patients", type=int, default=None)
    ap.add_argument("--sites", type=int, default=None, help="default 5 (--quick: 3)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--deployment-rounds", type=int, default=None)
    ap.add_argument("--no-deployment", action="store_true")
    ap.add_argument("--no-synthea", action="store_true", help="skip the Synthea task")
    ap.add_argument(
        "--only-deployment",
        action="store_true",
        help="references and the deployment run only (no simulation, stock or Synthea)",
    )
    args = ap.parse_args()
    args.sites = args.sites or (3 if args.quick else 5)
    patients = args.patients or (4_000 if args.quick else 20_000)
    rounds = args.rounds or (6 if args.quick else 20)
    dep_rounds = args.deployment_rounds or 3
    depth, eta, floor = 4, 0.3, 5
    quiet_environment()
    logging.getLogger("flwr").setLevel(logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="fedbench-"))
    spec_doc = synthetic_spec_document()
    spec = FeatureSpec.from_dict(spec_doc)
    spec_hash = spec.canonical_hash()
    names = list(spec.feature_names)
    t0 = time.perf_counter()
    train_dirs = write_ndjson(
        CohortConfig(n_patients=patients, n_sites=args.sites, seed=0), work / "train"
    )
    site_ids = [d.name for d in train_dirs]
    refs = {
        site: reference_site(
            folder,
            spec_doc,
            spec_hash,
            split_key=SPLIT_KEY,
            eval_fraction=EVAL_FRACTION,
            cache_dir=work / "cache" / site,
        )
        for site, folder in zip(site_ids, train_dirs, strict=True)
    }
    site_data = {s: refs[s].train for s in site_ids}
    for site in site_ids:
        X, y = site_data[site]
        np.savez(work / f"{site}.npz", X=X, y=y, feature_names=np.array(names))
    X_test, y_test = pooled_held_out(refs)
    print(
        f"cohort: {patients} patients, {len(site_ids)} sites "
        f"({', '.join(str(len(site_data[s][1])) for s in site_ids)} training rows), "
        f"held out {len(y_test)} rows ({EVAL_FRACTION:.0%} of each site's patients, "
        f"split key {SPLIT_KEY}); generated + extracted in {time.perf_counter() - t0:.1f}s"
    )

    results: dict[str, Any] = {"patients": patients, "sites": len(site_ids), "rounds": rounds}
    params = xgb_params(depth, eta, floor)

    # centralized baseline
    X_all = np.vstack([site_data[s][0] for s in site_ids])
    y_all = np.concatenate([site_data[s][1] for s in site_ids])
    t = time.perf_counter()
    central = xgb.train(params, xgb.DMatrix(X_all, label=y_all, feature_names=names), rounds)
    results["centralized_auc"] = auc(central, X_test, y_test, names)
    results["centralized_seconds"] = time.perf_counter() - t

    # a fair centralized reference: as many boosting steps as the federated bagging model
    # has trees, eta and the step count tuned on a validation split of the training patients
    train_keys = [refs[s].data.patient_keys[i] for s in site_ids for i in refs[s].split.train]
    tuned = tuned_central(X_all, y_all, train_keys, names, depth, floor, rounds * len(site_ids))
    results["centralized_tuned"] = tuned["choice"]
    results["centralized_tuned_auc"] = auc(tuned["model"], X_test, y_test, names)

    # local-only
    local = {
        s: auc(
            xgb.train(params, xgb.DMatrix(X, label=y, feature_names=names), rounds),
            X_test,
            y_test,
            names,
        )
        for s, (X, y) in site_data.items()
    }
    results["local_auc"] = local
    results["local_mean_auc"] = float(np.mean(list(local.values())))

    permit = build_permit_world(
        work / "permit", holders=site_ids, spec_hash=spec_hash, max_rounds=10_000
    )

    def sites_cfg() -> tuple[SiteConfig, ...]:
        return tuple(
            SiteConfig(
                site_id=s,
                data=FactoryRef(
                    "federation.adapters:fhir_source",
                    {"path": str(folder), "cache_dir": str(work / "cache" / s)},
                ),
                authorizer=FactoryRef(
                    "federation.adapters:permit_guard",
                    {
                        "holder": s,
                        "trust_list": str(permit.trust_list),
                        "status_list": str(permit.status_list),
                        "state_db": str(work / "state" / f"{s}.db"),
                    },
                ),
                audit=FactoryRef(
                    "federation.adapters:jsonl_sink", {"path": str(work / "audit" / f"{s}.jsonl")}
                ),
            )
            for s, folder in zip(site_ids, train_dirs, strict=True)
        )

    def job(name: str, strategy: str, n_rounds: int) -> TrainingJob:
        return TrainingJob(
            job_id=name,
            permit_token=permit.permit_token,
            request_signer=FactoryRef(
                "federation.adapters:request_signer",
                {"key_path": str(permit.user_key), "permit_token": permit.permit_token},
            ),
            spec=spec_doc,
            spec_hash=spec_hash,
            feature_names=tuple(names),
            output_dir=str(work / name),
            audit=FactoryRef(
                "federation.adapters:jsonl_sink",
                {"path": str(work / "audit" / "coordinator.jsonl")},
            ),
            sites=sites_cfg(),
            strategy=strategy,  # type: ignore[arg-type]
            rounds=n_rounds,
            min_sites=2,
            params=BoosterParams(max_depth=depth, eta=eta, min_child_weight=floor),
            eval_fraction=EVAL_FRACTION,
            split_key=SPLIT_KEY,
        )

    def released_auc(result: Any) -> float:
        booster = xgb.Booster()
        booster.load_model(result.model_ubj)
        return auc(booster, X_test, y_test, names)

    simulated = () if args.only_deployment else (("bagging", "bagging"), ("cyclic", "cyclic"))
    for strategy, key in simulated:
        try:
            t = time.perf_counter()
            res = train(job(f"bench-{key}", strategy, rounds), engine="simulation")
            results[f"{key}_seconds"] = time.perf_counter() - t
            if res.status != "completed":
                results[f"{key}_error"] = res.error_code
                continue
            results[f"{key}_auc"] = released_auc(res)
            per_round = [r.seconds for r in res.rounds]
            results[f"{key}_round_seconds_simulation"] = float(
                np.median(per_round[1:] or per_round)
            )
            results[f"{key}_bytes_per_site_round"] = float(
                np.mean([b for r in res.rounds for b in r.bytes_sent.values()])
            )
        except Exception as exc:  # report and continue with the other rows
            results[f"{key}_error"] = type(exc).__name__

    # Flower's stock recipe on the same split
    try:
        if args.only_deployment:
            raise RuntimeError("skipped")
        from flwr.simulation import run_simulation

        from federation.run import simulation_backend
        from federation.testing.stock import make_stock_apps

        stock_out: dict[str, Any] = {}
        stock_params = {k: v for k, v in params.items() if k != "base_score"}
        server, client = make_stock_apps(
            [str(work / f"{s}.npz") for s in site_ids], stock_params, rounds, 1, stock_out
        )
        t = time.perf_counter()
        run_simulation(
            server_app=server,
            client_app=client,
            num_supernodes=len(site_ids),
            backend_config=simulation_backend(len(site_ids)),  # type: ignore[arg-type]
        )
        results["stock_seconds"] = time.perf_counter() - t
        booster = xgb.Booster()
        booster.load_model(stock_out["model"])
        results["stock_auc"] = auc(booster, X_test, y_test, None)
        results["stock_bytes_per_site_round"] = float(
            np.mean([b for r in stock_out["bytes_per_round"] for b in r])
        )
        results["stock_trees"] = int(booster.num_boosted_rounds())
    except Exception as exc:
        results["stock_error"] = type(exc).__name__

    if not args.no_deployment:
        try:
            res = train(job("bench-deploy", "bagging", dep_rounds), engine="deployment")
            if res.status == "completed":
                results["deployment_round_seconds"] = float(
                    np.median([r.seconds for r in res.rounds])
                )
                results["deployment_auc"] = released_auc(res)
                runtime = work / "bench-deploy" / "deployment" / "runtime"
                timeline = round_timelines(res.rounds, runtime.glob("*/runs.jsonl"))
                results["deployment_timeline"] = timeline
                print(f"deployment ({len(site_ids)} sites, loopback): per-phase timeline")
                for line in format_timelines(timeline):
                    print("  " + line)
            else:
                results["deployment_error"] = res.error_code
        except Exception as exc:
            results["deployment_error"] = type(exc).__name__

    synthea = None if args.no_synthea or args.only_deployment else shared_synthea()
    if synthea is not None:
        try:
            results["synthea"] = synthea_task(work, synthea, 3 if args.quick else 10)
        except Exception as exc:
            results["synthea"] = {"error": type(exc).__name__}

    c = results["centralized_auc"]
    print(f"{'method':<28}{'AUC':>8}{'vs central':>12}")
    print(f"{'centralized (pooled)':<28}{c:>8.4f}{0.0:>+12.4f}")
    ct = results["centralized_tuned_auc"]
    choice = results["centralized_tuned"]
    print(
        f"{'centralized (tuned, fair)':<28}{ct:>8.4f}{ct - c:>+12.4f}"
        f"   eta {choice['eta']}, {choice['steps']} of <= {choice['max_steps']} steps"
    )
    for key, label in (
        ("bagging", "federated bagging (ours)"),
        ("cyclic", "federated cyclic (ours)"),
        ("stock", "Flower FedXgbBagging stock"),
        ("deployment", f"bagging, deployment {dep_rounds}r"),
    ):
        if f"{key}_auc" in results:
            print(f"{label:<28}{results[key + '_auc']:>8.4f}{results[key + '_auc'] - c:>+12.4f}")
        elif f"{key}_error" in results:
            print(f"{label:<28}{'error: ' + str(results[key + '_error']):>20}")
    for s, v in local.items():
        print(f"{'local only ' + s:<28}{v:>8.4f}{v - c:>+12.4f}")
    print(
        f"{'local only (mean)':<28}{results['local_mean_auc']:>8.4f}{results['local_mean_auc'] - c:>+12.4f}"
    )
    if "bagging_bytes_per_site_round" in results:
        print(
            f"bytes/site/round: ours {results['bagging_bytes_per_site_round']:.0f}"
            + (
                f", stock {results['stock_bytes_per_site_round']:.0f} "
                f"({results['stock_bytes_per_site_round'] / results['bagging_bytes_per_site_round']:.1f}x ours)"
                if "stock_bytes_per_site_round" in results
                else ""
            )
        )
    if "bagging_round_seconds_simulation" in results:
        line = f"s/round: simulation {results['bagging_round_seconds_simulation']:.2f}"
        if "deployment_round_seconds" in results:
            ratio = (
                results["deployment_round_seconds"] / results["bagging_round_seconds_simulation"]
            )
            results["deployment_vs_simulation"] = ratio
            results["target_deployment_round_10s"] = results["deployment_round_seconds"] <= 10.0
            line += (
                f", deployment {results['deployment_round_seconds']:.2f} median of {dep_rounds}"
                f" rounds ({ratio:.1f}x simulation)"
            )
        print(line)
    if "synthea" in results:
        print(f"Synthea task (40 R4 bundles over 3 sites, Prediabetes): {results['synthea']}")
    if "bagging_auc" in results:
        results["target_vs_centralized"] = results["bagging_auc"] >= c - 0.01
        results["target_vs_centralized_tuned"] = results["bagging_auc"] >= ct - 0.01
        results["target_vs_local_mean"] = results["bagging_auc"] > results["local_mean_auc"]
    print(orjson.dumps(results).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
