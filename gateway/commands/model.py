"""``ehds model verify MODEL CARD``: check a released model's provenance in the signed logs.

The card's claims (permit, spec, sites per round, model hash) are accepted only
when the HDAB's, the coordinator's and every contributing site's logs verify
end to end and hold the matching entries under their newest signed checkpoint,
each shown with its inclusion proof (see :mod:`gateway.provenance`). Any gap is
one line ``ehds: error: [CODE] ...`` and a non-zero exit.

    ehds model verify out/model.ubj out/model_card.json --trust audit_trust.json \\
        --hdab hdab-ee=audit/hdab-ee.sqlite --coordinator coordinator=audit/coordinator.sqlite \\
        --site hospital-a=audit/hospital-a.sqlite --site hospital-b=...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from audit_chain import TrustStore
from gateway.errors import ConfigError
from gateway.provenance import LogRef, ProvenanceError, ProvenanceReport, verify_model


def _log_ref(value: str) -> LogRef:
    """``ORG=DB`` or ``ORG=DB#LOG``: the organisation that keeps (and signs) the log."""
    org, sep, rest = value.partition("=")
    if not sep or not org or not rest:
        raise ConfigError(f"expected ORG=DATABASE[#LOG], got {value[:80]!r}")
    url, _, log_id = rest.partition("#")
    return LogRef(org=org, url=url, log_id=log_id or None)


def _read_card(path: str) -> dict[str, Any]:
    try:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ProvenanceError(
            "cannot read the model card as JSON", code="MODEL_CARD_INVALID"
        ) from None
    if not isinstance(card, dict):
        raise ProvenanceError("the model card is not a JSON object", code="MODEL_CARD_INVALID")
    return card


def _lines(report: ProvenanceReport) -> list[str]:
    def at(e: Any) -> str:
        return (
            f"{e.org} #{e.index} (checkpoint {e.checkpoint_size}, "
            f"inclusion proof {e.proof_hashes} hashes)"
        )

    lines = [
        f"OK: model {report.model_hash} is the one released by job {report.job}",
        f"  permit {report.permit} ({report.permit_hash})",
        f"    issued: {at(report.permit_issued)}",
        f"  training.started (spec {report.spec_hash}): {at(report.training_started)}",
    ]
    for r in report.rounds:
        lines.append(f"  round {r.round}: merged model {r.model_hash}, {at(r.coordinator)}")
        for site, e in r.sites.items():
            lines.append(f"    {site}: {at(e)}")
    for site, e in report.sites_extracted.items():
        lines.append(f"  {site} extracted features with the pinned spec: {at(e)}")
    lines.append(f"  model.released: {at(report.released)}")
    if report.card_checkpoint is not None:
        lines.append(
            f"  the card's checkpoint (size {report.card_checkpoint.get('size')}) "
            "is a prefix of the coordinator's log"
        )
    return lines


def _cmd_verify(args: argparse.Namespace) -> int:
    report = verify_model(
        args.model,
        _read_card(args.card),
        trust=TrustStore.load(args.trust),
        hdab=_log_ref(args.hdab),
        coordinator=_log_ref(args.coordinator),
        sites=[_log_ref(s) for s in args.site],
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(_lines(report)))
    return 0


def register(subparsers: Any) -> None:
    model = subparsers.add_parser(
        "model",
        help="check a released model's provenance in the signed audit logs",
        description="Check a released model against the HDAB's, coordinator's and sites' logs.",
    )
    sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "verify",
        help="prove permit, rounds, sites and model hash from the logs (exit 2 on any gap)",
    )
    p.add_argument("model", help="the released model file (model.ubj or model.json)")
    p.add_argument("card", help="its model card (model_card.json)")
    p.add_argument("--trust", required=True, help="audit trust store JSON (keys of every org)")
    p.add_argument("--hdab", required=True, help="HDAB log: ORG=DATABASE[#LOG]")
    p.add_argument("--coordinator", required=True, help="coordinator log: ORG=DATABASE[#LOG]")
    p.add_argument(
        "--site",
        action="append",
        default=[],
        help="a site's log: SITE=DATABASE[#LOG] (the site id is the org that signs it); repeat",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_verify)
