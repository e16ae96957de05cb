"""``ehds demo``: the whole flow on synthetic data, embedded defaults only."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the cross-border demo end to end and write an HTML report",
        description=(
            "Two HDABs co-sign a permit for three hospitals; each computes features from its\n"
            "synthetic FHIR cohort; federated XGBoost runs on Flower's simulation engine; a\n"
            "forbidden request is refused; the audit chain is verified; a report is written."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", type=Path, default=Path("ehds-demo"), help="output folder (default ./ehds-demo)"
    )
    p.add_argument(
        "--patients", type=int, default=3000, help="patients across all hospitals (default 3000)"
    )
    p.add_argument(
        "--rounds", type=int, default=5, help="federated rounds (default 5; the permit allows 8)"
    )
    p.add_argument("--seed", type=int, default=7, help="cohort seed (default 7)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    result = run_demo(args.out, patients=args.patients, rounds=args.rounds, seed=args.seed, say=say)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"\nreport: {result.report}")
        print(
            f"audit log: {result.audit_size} entries, {'verified' if result.audit_ok else 'NOT verified'}"
        )
    if not result.audit_ok:
        print("ehds: error: [AUDIT_VERIFY_FAILED] the audit chain did not verify", file=sys.stderr)
        return 1
    return 0
