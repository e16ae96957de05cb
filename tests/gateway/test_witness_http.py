"""Witnesses on loopback aiohttp servers: the C2SP HTTP interface and the log's background witnessing.

Real components: aiohttp servers and client, SQLite logs and witness state,
Ed25519 keys; nothing is mocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import delete

import trust
from audit_chain import EventSigner, TrustStore
from audit_chain.checkpoint import log_verifier
from audit_chain.log import AuditLog
from audit_chain.note import parse_vkey
from audit_chain.sink import SignedLogSink
from audit_chain.storage import COSIGNATURES, LogStore
from audit_chain.verify import WitnessPolicy, verify_log
from audit_chain.witness import add_checkpoint_request
from gateway.witness_wiring import WitnessServers, witness_for
from gateway.witnessing import WitnessEndpoint, Witnessing

ORIGIN = "site-a:audit"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[AuditLog, list, list[str], TrustStore]]:  # type: ignore[type-arg]
    log_key = EventSigner.generate("site-a")
    log = AuditLog.open(tmp_path / "site-a.db", log_id=ORIGIN, signer=log_key)
    stores = [LogStore(tmp_path / f"org-{i}.db") for i in range(3)]
    audit_logs = [
        AuditLog.open(
            tmp_path / f"org-{i}.db",
            log_id=f"org-{i}:audit",
            signer=EventSigner.generate(f"org-{i}"),
        )
        for i in range(3)
    ]
    wits = [
        witness_for(
            f"org-{i}/witness",
            trust.SigningKey.generate("EdDSA", uses=[trust.KeyUse.WITNESS]).private_jwk(),
            stores[i],
            [log_verifier(log_key, ORIGIN)],
        )
        for i in range(3)
    ]
    sinks = [SignedLogSink(al, al.signer) for al in audit_logs]  # type: ignore[arg-type]
    trusted = TrustStore([log_key.trusted_key(), *(al.signer.trusted_key() for al in audit_logs)])  # type: ignore[union-attr]
    with WitnessServers(wits, sinks) as urls:
        endpoints = [f"{w.verifier().vkey()} {u}" for w, u in zip(wits, urls, strict=True)]
        try:
            yield log, wits, endpoints, trusted
        finally:
            log.close()
            for s in stores:
                s.close()
            for al in audit_logs:
                al.close()


def _fill(log: AuditLog, n: int, batch: int = 10) -> None:
    sink = SignedLogSink(log, log.signer)  # type: ignore[arg-type]
    for start in range(0, n, batch):
        with sink.batch():
            for i in range(start, min(n, start + batch)):
                sink.record("training.round", subject={"job": "j"}, details={"round": i})


async def _note(url: str) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{url}/checkpoint", params={"origin": ORIGIN}) as r,
    ):
        assert r.status == 200
        return await r.text()


async def test_log_collects_cosignatures_in_the_background(setup) -> None:  # type: ignore[no-untyped-def]
    log, wits, endpoints, trust = setup
    witnessing = Witnessing(log, [WitnessEndpoint.parse(e) for e in endpoints]).start()
    try:
        _fill(log, 60)
        assert await asyncio.to_thread(witnessing.flush, 20)
        assert {s.size for s in witnessing.status().values()} == {60}
    finally:
        witnessing.close()
    stored = log.store.cosignatures(ORIGIN)
    assert {w for size, w, _, _ in stored if size == 60} == {w.name for w in wits}
    notes = tuple([await _note(e.split()[1]) for e in endpoints])
    policy = WitnessPolicy(tuple(parse_vkey(e.split()[0]) for e in endpoints), 2, notes)
    report = verify_log(log, trust, log_org="site-a", witnesses=policy)
    assert report.ok and report.verified_size == 60, report.message


async def test_a_restarted_client_learns_the_size_from_409(setup) -> None:  # type: ignore[no-untyped-def]
    log, _, endpoints, _ = setup
    first = Witnessing(log, [WitnessEndpoint.parse(endpoints[0])]).start()
    _fill(log, 5)
    assert await asyncio.to_thread(first.flush, 20)
    first.close()
    with log.store.engine.begin() as conn:  # the log lost its record of what was cosigned
        conn.execute(delete(COSIGNATURES))
    _fill(log, 4)
    again = Witnessing(log, [WitnessEndpoint.parse(endpoints[0])]).start()
    try:
        assert await asyncio.to_thread(again.flush, 20)
        assert again.status()[parse_vkey(endpoints[0].split()[0]).name].size == 9
    finally:
        again.close()


async def test_appends_never_wait_for_an_unreachable_witness(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log, wits, _, _ = setup
    dead = WitnessEndpoint(wits[0].verifier(), "http://127.0.0.1:9/witness")  # discard port
    witnessing = Witnessing(log, [dead], timeout=2).start()
    try:
        _fill(log, 30)
        assert log.size() == 30
        assert not await asyncio.to_thread(witnessing.flush, 20)
        assert "unreachable" in str(witnessing.status()[wits[0].name].error)
    finally:
        witnessing.close()


async def test_http_refusals_follow_the_spec_and_are_audited(setup) -> None:  # type: ignore[no-untyped-def]
    log, wits, endpoints, _ = setup
    url = endpoints[0].split()[1]
    _fill(log, 3)
    cp3 = log.checkpoint()
    async with aiohttp.ClientSession() as s:

        async def post(body: bytes) -> aiohttp.ClientResponse:
            async with s.post(f"{url}/add-checkpoint", data=body) as r:
                await r.read()
                return r

        r = await post(b"garbage")
        assert r.status == 400 and r.content_type == "application/problem+json"
        ok = await post(add_checkpoint_request(0, [], cp3.note))
        assert ok.status == 200
        async with s.post(
            f"{url}/add-checkpoint", data=add_checkpoint_request(0, [], cp3.note)
        ) as r:
            assert r.status == 409 and r.content_type == "text/x.tlog.size"
            assert await r.text() == "3\n"
        _fill(log, 2)
        cp5 = log.checkpoint()
        bad_proof = log.consistency_proof(2, 5)  # a proof from the wrong size
        async with s.post(
            f"{url}/add-checkpoint", data=add_checkpoint_request(3, bad_proof, cp5.note)
        ) as r:
            assert r.status == 422
            assert (await r.json())["code"] == "WITNESS_BAD_PROOF"
        async with s.get(f"{url}/checkpoint", params={"origin": "nobody"}) as r:
            assert r.status == 404
        async with s.get(url) as r:
            info = await r.json()
            assert info["vkey"] == wits[0].verifier().vkey() and info["logs"] == [ORIGIN]
    # the 409 and the 422 are evidence of log misbehaviour: in the witness org's own log
    with AuditLog.open(wits[0].store.url) as own:
        refused = [e for e in own.entries() if e.type == "witness.refused"]
        assert len(refused) == 2


async def test_two_hdab_services_witness_each_other(tmp_path: Path) -> None:
    """The services' own configuration: ``[audit] witness_logs`` and ``witnesses`` files."""
    from gateway.client_keys import KeyRing
    from gateway.hdab_service import create_hdab_app
    from gateway.witness_wiring import load_witness_key, witness_name, witness_signer
    from tests.gateway.conftest import make_config, start

    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    b_key = trust.SigningKey.load_or_create(  # B's log (and permit) key, made up front
        b_dir / "keys" / "hdab.jwk", uses={"audit", "permit", "status"}
    )
    b_signer = EventSigner("hdab-b", b_key.private_jwk())
    (tmp_path / "a-logs.vkeys").write_text(log_verifier(b_signer, "hdab-b:audit").vkey() + "\n")

    def config(d: Path, org: str, **env: str):  # type: ignore[no-untyped-def]
        return make_config(
            d, "hdab", EHDS_HDAB_ID=org, EHDS_HDAB_DATABASE=f"sqlite:///{d}/hdab.sqlite",
            EHDS_AUDIT_DATABASE=str(d / "audit.sqlite"), **env,
        )  # fmt: skip

    a = await start(
        create_hdab_app(
            config(a_dir, "hdab-a", EHDS_AUDIT_WITNESS_LOGS=str(tmp_path / "a-logs.vkeys")),
            keys=KeyRing(),
        )
    )
    try:
        info = await (await a.get("/witness")).json()
        a_key = load_witness_key(a_dir / "keys" / "hdab-witness.jwk")
        vkey = witness_signer(witness_name("hdab-a"), a_key)
        assert info["vkey"] == vkey.verifier().vkey() and info["logs"] == ["hdab-b:audit"]
        (tmp_path / "b-witnesses").write_text(f"{info['vkey']} {a.make_url('/witness')}\n")
        b = await start(
            create_hdab_app(
                config(b_dir, "hdab-b", EHDS_AUDIT_WITNESSES=str(tmp_path / "b-witnesses")),
                keys=KeyRing(),
            )
        )
        try:
            held = None
            for _ in range(
                100
            ):  # B published its status list at start: A cosigns in the background
                r = await a.get("/witness/checkpoint", params={"origin": "hdab-b:audit"})
                if r.status == 200:
                    held = await r.text()
                    break
                await asyncio.sleep(0.1)
            assert held is not None and held.startswith("hdab-b:audit\n")
            assert "\u2014 hdab-a/witness " in held
        finally:
            await b.close()
    finally:
        await a.close()


def test_cli_asks_the_witnesses_now(
    setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    import json

    from gateway.cli import main

    log, wits, endpoints, _ = setup
    _fill(log, 7)
    listing = tmp_path / "witnesses.txt"
    listing.write_text("\n".join(endpoints) + "\n")
    db = str(tmp_path / "site-a.db")
    code = main(["audit", "witness", "--db", db, "--witnesses", str(listing), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and {v["size"] for v in out["witnesses"].values()} == {7}
    assert all(w.latest(ORIGIN).split("\n")[1] == "7" for w in wits)  # type: ignore[union-attr]
