"""``ehds model verify``: a released model's provenance, proven from the organisations' logs.

A small federated run (three sites, two rounds, Flower messages in process;
the same apps run on Flower's engines in the federation tests) writes every
event to real signed SQLite audit logs: one per site and one for the
coordinator. The HDAB's log gets the ``permit.issued`` entry its service
writes when it issues the permit (the dev permit world signs the permit
without an HDAB service, so the entry is recorded here with the same schema
and the permit's real hash). After the run each organisation publishes a
checkpoint, as its service does. Then a third party, holding only the model,
the card, the databases and the public keys, checks the model.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

import trust
from audit_chain import EventSigner, SignedLogSink, TrustStore
from audit_chain.events import sign_event
from audit_chain.log import AuditLog
from federation import ubj
from federation.jobs import signed_audit
from federation.testing.devpermit import build_permit_world
from federation.testing.synthetic import risk_cohort, write_site_arrays
from gateway.cli import main
from permits.model import sha256_tag
from tests.federation.conftest import SITES, World
from tests.federation.test_protocol import _run
from trust import b64url_decode

ORGS = ("hdab-dev", "coordinator", *SITES)


@dataclass(frozen=True)
class Run:
    root: Path
    model: Path
    card: Path
    trust: Path
    db: dict[str, Path]
    keys: dict[str, Path]

    def argv(self, *, model: Path | None = None, card: Path | None = None) -> list[str]:
        args = [
            "model",
            "verify",
            str(model or self.model),
            str(card or self.card),
            "--trust",
            str(self.trust),
            "--hdab",
            f"hdab-dev={self.db['hdab-dev']}",
            "--coordinator",
            f"coordinator={self.db['coordinator']}",
        ]
        for site in SITES:
            args += ["--site", f"{site}={self.db[site]}"]
        return args


def _checkpoint(db: Path, key: Path) -> None:
    with AuditLog.open(str(db), signer=EventSigner.load(key)) as log:
        log.checkpoint()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("provenance")
    split = risk_cohort(SITES, patients=600, n_features=4, n_classes=2, seed=3)
    data = write_site_arrays(split, root / "data")
    spec = {"name": "test-spec", "features": list(split.feature_names)}
    spec_hash = trust.spec_hash(spec)
    permit = build_permit_world(root / "permit", holders=SITES, spec_hash=spec_hash)
    world = World(root, split, data, spec, spec_hash, permit)

    store = TrustStore()
    keys, dbs = {}, {}
    for org in ORGS:
        signer = EventSigner.generate(org)
        keys[org] = root / f"{org}.key.json"
        keys[org].write_bytes(orjson.dumps(signer.to_json()))
        dbs[org] = root / f"{org}.sqlite"
        store.add_key(signer.trusted_key())
    store.save(root / "trust.json")

    payload = b64url_decode(permit.permit_token.split(".")[1])
    with AuditLog.open(str(dbs["hdab-dev"]), signer=EventSigner.load(keys["hdab-dev"])) as log:
        SignedLogSink(log, EventSigner.load(keys["hdab-dev"])).record(
            "permit.issued",
            subject={"permit": permit.permit_jti},
            details={"permit_hash": sha256_tag(payload), "version": 1, "signatures": 1},
        )

    sites = [world.site(s, audit=signed_audit(str(dbs[s]), keys[s])) for s in SITES]
    job = world.job(
        sites=sites, rounds=2, audit=signed_audit(str(dbs["coordinator"]), keys["coordinator"])
    )
    _grid, result = _run(job)
    assert result.status == "completed", result.error_code
    for org in ORGS:
        _checkpoint(dbs[org], keys[org])
    return Run(
        root, Path(result.model_ubj), Path(result.model_card), root / "trust.json", dbs, keys
    )


def _copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite log (its WAL included), as an attacker would take."""
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)


def _verify(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _card(run: Run, tmp_path: Path, **changes: object) -> Path:
    card = json.loads(run.card.read_text())
    card.update(changes)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    return path


def test_released_model_is_proven_from_all_logs(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _verify(capsys, [*run.argv(), "--json"])
    assert code == 0, err
    report = json.loads(out)
    card = json.loads(run.card.read_text())
    assert report["model_hash"] == card["model_hash"]
    assert report["permit_issued"]["org"] == "hdab-dev"
    assert report["permit_issued"]["type"] == "permit.issued"
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for r in report["rounds"]:
        assert sorted(r["sites"]) == sorted(SITES)  # which sites contributed to which round
        for site, entry in r["sites"].items():
            assert entry["org"] == site and entry["type"] == "training.round"
    assert report["released"]["type"] == "model.released"
    # every cited entry is under its log's checkpoint, with a real inclusion proof
    assert report["released"]["index"] < report["released"]["checkpoint_size"]
    assert report["released"]["proof_hashes"] >= 1
    code, out, err = _verify(capsys, run.argv())  # the human form
    assert code == 0 and out.startswith("OK: model sha256:"), err
    assert "site-b: site-b #" in out
    code, _out, err = _verify(capsys, run.argv(model=run.model.with_name("model.json")))
    assert code == 0, err  # the JSON form of the same model hashes the same


def test_tampered_model_file_fails(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = ubj.loads(run.model.read_bytes())
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["split_conditions"][-1] = float(tree["split_conditions"][-1]) + 0.25  # a leaf value
    swapped = tmp_path / "model.ubj"
    swapped.write_bytes(ubj.dumps(doc, xgboost_compatible=True))
    code, out, err = _verify(capsys, run.argv(model=swapped))
    assert code != 0 and out == ""
    assert err.startswith("ehds: error: [MODEL_HASH_MISMATCH]"), err
    # ... and a card edited to claim the swapped model's hash is still not what was logged
    from federation.release import released_model_hash

    card = _card(run, tmp_path, model_hash=released_model_hash(swapped))
    code, _out, err = _verify(capsys, run.argv(model=swapped, card=card))
    assert code != 0 and "[MODEL_HASH_NOT_LOGGED]" in err, err
    garbage = tmp_path / "garbage.ubj"
    garbage.write_bytes(b"\x00" * 64)
    code, _out, err = _verify(capsys, run.argv(model=garbage))
    assert code != 0 and "[MODEL_FILE_INVALID]" in err, err


def test_card_naming_a_different_permit_fails(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _verify(capsys, run.argv(card=_card(run, tmp_path, permit="permit-other")))
    assert code != 0 and "[MODEL_PERMIT_MISMATCH]" in err and "permit-other" in err, err
    other_hash = "sha256:" + "0" * 64
    code, _out, err = _verify(capsys, run.argv(card=_card(run, tmp_path, permit_hash=other_hash)))
    assert code != 0 and "[MODEL_PERMIT_MISMATCH]" in err, err


def test_card_claiming_other_rounds_or_sites_fails(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = json.loads(run.card.read_text())
    rounds = card["per_round"]
    rounds[0] = {**rounds[0], "model_hash": "sha256:" + "1" * 64}
    code, _out, err = _verify(capsys, run.argv(card=_card(run, tmp_path, per_round=rounds)))
    assert code != 0 and "[MODEL_ROUND_MISMATCH]" in err, err
    # a site's log handed in for another site: its checkpoint is not that site's
    argv = run.argv()
    argv[argv.index(f"site-a={run.db['site-a']}")] = f"site-a={run.db['site-b']}"
    code, _out, err = _verify(capsys, argv)
    assert code != 0 and "[MODEL_LOG_INVALID]" in err, err
    # a contributing site without its log
    argv = run.argv()
    i = argv.index(f"site-c={run.db['site-c']}")
    del argv[i - 1 : i + 1]
    code, _out, err = _verify(capsys, argv)
    assert code != 0 and "[MODEL_SITE_LOG_MISSING]" in err, err


def test_entries_beyond_the_checkpoint_are_not_evidence(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A correctly signed model.released appended after the newest checkpoint proves nothing."""
    late = tmp_path / "coordinator.sqlite"
    _copy_db(run.db["coordinator"], late)
    signer = EventSigner.load(run.keys["coordinator"])
    card = json.loads(run.card.read_text())
    with AuditLog.open(str(late)) as log:  # no signer: appended without a checkpoint
        token = sign_event(
            signer,
            "model.released",
            subject={"permit": card["permit"], "job": "job-late", "model": "job-late.model"},
            details={"model_hash": card["model_hash"], "rounds": 2, "sites": 3},
            origin=log.log_id,
            index=log.size(),
        )
        log.append(token)
    argv = run.argv(card=_card(run, tmp_path, model="job-late.model"))
    argv[argv.index(f"coordinator={run.db['coordinator']}")] = f"coordinator={late}"
    code, _out, err = _verify(capsys, argv)
    assert code != 0, err
    assert ("[MODEL_NOT_RELEASED]" in err and "beyond" in err) or "[MODEL_LOG_INVALID]" in err


def test_tampered_site_log_and_missing_database_fail(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = tmp_path / "site-b.sqlite"
    _copy_db(run.db["site-b"], forged)
    with sqlite3.connect(forged) as conn:  # rewrite the bytes of one signed entry
        row = conn.execute("SELECT leaf FROM audit_entry WHERE idx = 1").fetchone()
        assert row is not None
        leaf = bytearray(row[0])
        mid = len(leaf) // 2  # one character of the signed payload
        leaf[mid] = ord("B") if leaf[mid] != ord("B") else ord("C")
        conn.execute("UPDATE audit_entry SET leaf = ? WHERE idx = 1", (bytes(leaf),))
    argv = run.argv()
    argv[argv.index(f"site-b={run.db['site-b']}")] = f"site-b={forged}"
    code, _out, err = _verify(capsys, argv)
    assert code != 0 and "[MODEL_LOG_INVALID]" in err, err
    argv = run.argv()
    argv[argv.index(f"site-b={run.db['site-b']}")] = f"site-b={tmp_path / 'nope.sqlite'}"
    code, _out, err = _verify(capsys, argv)
    assert code != 0 and "[MODEL_LOG_MISSING]" in err, err
    assert not (tmp_path / "nope.sqlite").exists()  # asking never creates an empty log
