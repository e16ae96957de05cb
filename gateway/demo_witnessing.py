"""The demo's witness network: every organisation cosigns the others' audit logs.

Each organisation (two HDABs, three hospitals, the coordinator) runs a C2SP
witness on loopback whose state lives in its own audit database, next to its
log. Each log asks the five other witnesses for cosignatures (the background
:class:`~gateway.witnessing.Witnessing`, flushed here so the demo can show the
result), then every log is verified with a policy: the five other witnesses
trusted, a quorum of three, and what each witness holds read from *its*
database -- so no organisation can cut, rewrite or fork its log unseen.

The HDABs' logs record the permit decision (``permit.issued``) here; the
hospitals and the coordinator logs were written during training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_chain import EventSigner, TrustStore
from audit_chain.checkpoint import log_verifier
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.storage import LogStore
from audit_chain.verify import VerifyReport, WitnessPolicy, verify_log
from audit_chain.witness import Witness
from gateway.witness_wiring import WitnessServers, load_witness_key, witness_for, witness_name
from gateway.witnessing import WitnessEndpoint, Witnessing

QUORUM = 3


@dataclass
class WitnessedLog:
    org: str
    report: VerifyReport
    cosigners: dict[str, int] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "log (origin)": self.org,
            "entries": self.report.size,
            "verified under quorum": self.report.verified_size,
            "cosigned by": ", ".join(
                f"{w.split('/')[0]} @{s}" for w, s in sorted(self.cosigners.items())
            )
            or "nobody",
            "verdict": "verified"
            if self.report.ok
            else f"{self.report.reason} at {self.report.index}",
        }


def record_permit_decisions(
    url_for: Callable[[str], str], keys_dir: Path, hdabs: Sequence[str], permit: Mapping[str, Any]
) -> None:
    """Each HDAB's log records its part of the co-signed permit (the lead issues, the other co-signs)."""
    for org in hdabs:
        signer = _signer(keys_dir, org)
        with AuditLog.open(url_for(org), signer=signer) as log:
            SignedLogSink(log, signer).record(
                "permit.issued",
                subject={"permit": str(permit["jti"])},
                details={
                    "permit_hash": str(permit["permit_hash"]),
                    "version": int(permit["version"]),
                    "signatures": len(hdabs),
                },
            )


def _signer(keys_dir: Path, org: str) -> EventSigner:
    path = keys_dir / f"{org}.json"
    if path.exists():
        return EventSigner.load(path)
    signer = EventSigner.generate(org)
    import json

    path.write_text(json.dumps(signer.to_json()))
    return signer


def witness_each_other(
    url_for: Callable[[str], str],
    keys_dir: Path,
    orgs: Sequence[str],
    trust: TrustStore,
    *,
    say: Callable[[str], None] = print,
) -> list[WitnessedLog]:
    """Run the witness network over the orgs' logs; return each log's policy verdict."""
    log_keys = {org: _signer(keys_dir, org) for org in orgs}
    stores = {org: LogStore(url_for(org)) for org in orgs}
    witnesses: dict[str, Witness] = {}
    for org in orgs:
        known = [log_verifier(log_keys[o], o) for o in orgs if o != org]
        witness_key = load_witness_key(keys_dir / f"{org}-witness.jwk")
        witnesses[org] = witness_for(witness_name(org), witness_key, stores[org], known)
    results: list[WitnessedLog] = []
    try:
        with WitnessServers([witnesses[o] for o in orgs]) as urls:
            url_of = dict(zip(orgs, urls, strict=True))
            for org in orgs:
                endpoints = [
                    WitnessEndpoint(witnesses[o].verifier(), url_of[o]) for o in orgs if o != org
                ]
                with AuditLog.open(url_for(org), signer=log_keys[org]) as log:
                    witnessing = Witnessing(log, endpoints).start()
                    all_cosigned = witnessing.flush(30)
                    witnessing.close()
                say(
                    f"    {org}: checkpoint of size {log_size(url_for(org))} cosigned by "
                    f"{'all' if all_cosigned else 'NOT all'} {len(endpoints)} other organisations"
                )
        for org in orgs:
            others = [o for o in orgs if o != org]
            notes = tuple(
                n for o in others if (n := witnesses[o].latest(org)) is not None
            )  # read from each witness's own database
            policy = WitnessPolicy(tuple(witnesses[o].verifier() for o in others), QUORUM, notes)
            with AuditLog.open(url_for(org)) as log:
                report = verify_log(log, trust, log_org=org, witnesses=policy)
            results.append(WitnessedLog(org, report, dict(report.cosigned)))
    finally:
        for store in stores.values():
            store.close()
    return results


def log_size(url: str) -> int:
    with AuditLog.open(url) as log:
        return log.size()


__all__ = ["QUORUM", "WitnessedLog", "record_permit_decisions", "witness_each_other"]
