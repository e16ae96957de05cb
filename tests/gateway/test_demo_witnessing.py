"""The demo's witness network without the training (fast): six organisations cosign each other's logs.

Real witnesses on loopback aiohttp servers, SQLite logs, the report's cosignature section.
"""

from __future__ import annotations

import json
from pathlib import Path

from audit_chain import EventSigner, TrustStore
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.storage import LogStore
from gateway.demo_witnessing import record_permit_decisions, witness_each_other
from gateway.report import ReportData, render_report

SITES = ["ee-tartu-uh", "ee-north-estonia-mc", "fi-hus-helsinki", "coordinator"]
HDABS = ["hdab-ee", "hdab-fi"]


def test_six_organisations_witness_each_other(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    trust = TrustStore()

    def url(org: str) -> str:
        return f"sqlite:///{tmp_path / (org + '.sqlite')}"

    for org in SITES + HDABS:
        signer = EventSigner.generate(org)
        (keys / f"{org}.json").write_text(json.dumps(signer.to_json()))
        trust.add_key(signer.trusted_key())
    for org in SITES:
        signer = EventSigner.load(keys / f"{org}.json")
        with AuditLog.open(url(org), signer=signer) as log:
            SignedLogSink(log, signer).record(
                "training.round", subject={"job": "j"}, details={"round": 1}
            )
    permit = {"jti": "permit-1", "permit_hash": "sha256:" + "ab" * 32, "version": 1}
    record_permit_decisions(url, keys, HDABS, permit)
    orgs = [*HDABS, *SITES]
    results = witness_each_other(url, keys, orgs, trust, say=lambda _: None)
    assert [r.org for r in results] == orgs
    for r in results:
        assert r.report.ok and r.report.verified_size == r.report.size == 1, r.report.message
        assert set(r.cosigners) == {f"{o}/witness" for o in orgs if o != r.org}
    html = render_report(
        ReportData("t", "now", [], [], {}, [], {}, [], [], cosignatures=[r.row() for r in results])
    )
    assert "Witness cosignatures" in html and "hdab-fi @1" in html
    with AuditLog.open(url("hdab-ee")) as log:
        assert [e.type for e in log.entries()] == ["permit.issued"]
    # the witness state lives in each organisation's own audit database
    store = LogStore(url("fi-hus-helsinki"))
    assert set(store.witness_origins()) == set(orgs) - {"fi-hus-helsinki"}
    store.close()
