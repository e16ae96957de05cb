"""``ehds job create``: the researcher's training job file, from a permit and a feature spec.

``ehds job create --permit permit.jws --spec spec.json --sites a,b,c --key
me.jwk --out job.json`` writes a ``federation.job.TrainingJob`` for the
deployment engine: the coordinator waits for the listed sites (each must be a
data holder named in the permit, and the spec must be the one the permit pins
for every one of them), signs each site's request with ``--key`` (an
authorised person's private JWK, as named in the permit) and writes the model,
its card and ``result.json`` to ``--output-dir``. Site configurations are not
in the job: each hospital keeps its own (``ehds node init``). Submit it with
``flwr run <app-dir> <connection> --run-config 'job-file="<abs path>"'``; the
Flower app is ``docs/examples/flower-app``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError, ValidationError


def create_job(args: argparse.Namespace) -> dict[str, Any]:
    from federation.adapters import spec_feature_names, spec_hash_of
    from federation.factory import FactoryRef
    from federation.job import BoosterParams, TrainingJob
    from federation.permit_view import read_permit

    try:
        token = Path(args.permit).read_text(encoding="utf-8").strip()
        spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the permit or the spec: {type(exc).__name__}") from None
    plan = read_permit(token)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    if not sites or len(set(sites)) != len(sites):
        raise ValidationError("--sites must list distinct site ids")
    unknown = sorted(set(sites) - set(plan.holders))
    if unknown:
        raise ValidationError(
            f"not data holders of permit {plan.jti}: {', '.join(unknown)}", code="JOB_SITE_UNKNOWN"
        )
    spec_hash = spec_hash_of(spec)
    wrong = sorted(s for s in sites if plan.spec_hashes.get(s) not in (None, spec_hash))
    if wrong:
        raise ValidationError(
            f"the permit pins another feature spec for: {', '.join(wrong)}",
            code="JOB_SPEC_MISMATCH",
        )
    key = Path(args.key).resolve()
    if not key.exists():
        raise ConfigError(f"request signing key not found: {key}")
    out_dir = Path(args.output_dir).resolve()
    audit = (
        FactoryRef(
            "federation.adapters:signed_log_sink",
            {
                "db_url": args.audit_db,
                "key_path": str(Path(args.audit_key).resolve()),
                "log_id": args.audit_log_id,
            },
        )
        if args.audit_db and args.audit_key
        else FactoryRef("federation.adapters:jsonl_sink", {"path": str(out_dir / "audit.jsonl")})
    )
    job = TrainingJob(
        job_id=args.job_id or f"job-{plan.jti}",
        permit_token=token,
        request_signer=FactoryRef(
            "federation.adapters:request_signer", {"key_path": str(key), "permit_token": token}
        ),
        spec=spec,
        spec_hash=spec_hash,
        feature_names=spec_feature_names(spec),
        output_dir=str(out_dir),
        audit=audit,
        strategy=args.strategy,
        rounds=args.rounds,
        min_sites=args.min_sites or len(sites),
        expected_sites=len(sites),
        params=BoosterParams(max_depth=args.max_depth),
        round_timeout=args.round_timeout,
    )
    path = job.write(Path(args.out))
    return {
        "job": str(Path(path).resolve()),
        "job_id": job.job_id,
        "permit": plan.jti,
        "sites": sites,
        "spec_hash": spec_hash,
        "output_dir": str(out_dir),
    }


def _run(args: argparse.Namespace) -> int:
    out = create_job(args)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"wrote {out['job']} ({out['job_id']}, permit {out['permit']})")
        print(
            "run: flwr run docs/examples/flower-app <connection> --run-config "
            f"'job-file=\"{out['job']}\"' --stream"
        )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "job",
        help="write a researcher's training job file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="job_command", metavar="COMMAND", required=True)
    p = sub.add_parser("create", help="a job.json for a permit, a spec and the sites")
    p.add_argument("--permit", required=True, type=Path, help="the permit token file")
    p.add_argument("--spec", required=True, type=Path, help="the feature spec (JSON)")
    p.add_argument("--sites", required=True, help="comma-separated site ids (permit holders)")
    p.add_argument("--key", required=True, type=Path, help="authorised person's private JWK")
    p.add_argument("--out", type=Path, default=Path("job.json"), help="where to write the job")
    p.add_argument("--output-dir", default="model", help="where the model and card go")
    p.add_argument("--job-id", help="default: job-<permit jti>")
    p.add_argument("--strategy", choices=("bagging", "cyclic"), default="bagging")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-sites", type=int, help="fewest sites per round (default: all)")
    p.add_argument("--max-depth", type=int, default=4)
    p.add_argument("--round-timeout", type=float, default=600.0)
    p.add_argument("--audit-db", help="coordinator audit log (SQLite path or URL)")
    p.add_argument("--audit-key", help="private JWK signing the coordinator's audit log")
    p.add_argument("--audit-log-id", default="coordinator:audit")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)
