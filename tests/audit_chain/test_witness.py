"""The witness (C2SP tlog-witness) and the C2SP formats, on SQLite and PostgreSQL.

The checkpoint note and the cosignature are checked by code written here from the
spec text (c2sp.org/signed-note, tlog-checkpoint, tlog-cosignature), not by the
module under test: key IDs, the signed bytes and the signature layout.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import trust
from audit_chain import EventSigner
from audit_chain.errors import AuditWitnessError
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.witness import add_checkpoint_request, parse_add_checkpoint
from tests.audit_chain.conftest import LOG_ID
from tests.audit_chain.witnesses import cosign, make_witness, witnesses


def _fill(sink: SignedLogSink, n: int) -> None:
    for i in range(n):
        sink.record("training.round", subject={"job": "job-1"}, details={"round": i})


def _raw_public(signer: EventSigner) -> bytes:
    x = signer.public_jwk()["x"]
    return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))


# ------------------------------------------------------------ the spec, re-implemented here


def spec_key_id(name: str, sig_type: int, public: bytes) -> bytes:
    # signed-note: key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]
    return hashlib.sha256(name.encode("utf-8") + b"\x0a" + bytes([sig_type]) + public).digest()[:4]


def spec_split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    # "the text is separated from the signatures by the last empty line in the note";
    # signature lines: em dash, space, key name, space, base64 signature, newline
    text, _, sigs = note.rpartition("\n\n")
    lines = []
    for line in sigs.rstrip("\n").split("\n"):
        assert line.startswith("\u2014 ")
        name, b64 = line[2:].split(" ")
        lines.append((name, base64.b64decode(b64)))
    return text + "\n", lines


def spec_verify_checkpoint(note: str, origin: str, public: bytes) -> tuple[int, bytes]:
    text, sigs = spec_split_note(note)
    origin_line, size_line, root_line = text.rstrip("\n").split("\n")
    assert origin_line == origin
    want_id = spec_key_id(origin, 0x01, public)
    (sig,) = [raw for name, raw in sigs if name == origin and raw[:4] == want_id]
    Ed25519PublicKey.from_public_bytes(public).verify(sig[4:], text.encode())
    return int(size_line), base64.b64decode(root_line)


def spec_verify_cosignature(checkpoint_text: str, line: str, name: str, public: bytes) -> int:
    # tlog-cosignature: key ID uses type 0x04; the signature is u64 big-endian timestamp
    # followed by the Ed25519 signature over "cosignature/v1\ntime <ts>\n" || note body
    assert line.startswith(f"\u2014 {name} ") and line.endswith("\n")
    raw = base64.b64decode(line.rstrip("\n").split(" ")[2])
    assert raw[:4] == spec_key_id(name, 0x04, public)
    assert len(raw) == 4 + 8 + 64
    timestamp = int.from_bytes(raw[4:12], "big")
    message = f"cosignature/v1\ntime {timestamp}\n".encode() + checkpoint_text.encode()
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)
    return timestamp


# ------------------------------------------------------------ tests


def test_checkpoint_and_cosignature_verify_with_the_spec_text(
    log: AuditLog, sink: SignedLogSink, log_key: EventSigner, witness_urls: list[str]
) -> None:
    _fill(sink, 5)
    cp = log.checkpoint()
    assert cp.note.startswith(f"{LOG_ID}\n5\n")  # origin = the organisation's log name
    size, root = spec_verify_checkpoint(cp.note, LOG_ID, _raw_public(log_key))
    assert (size, root) == (5, log.root())
    with witnesses(witness_urls[:1], log_key, LOG_ID) as (party,):
        request = add_checkpoint_request(0, [], cp.note)
        line = party.witness.add_checkpoint(request)
        public = party.witness.signer.public
        assert spec_verify_cosignature(cp.body, line, party.witness.name, public) > 0
        # a cosignature is bound to its checkpoint: the same line does not verify another size
        _fill(sink, 1)
        other = log.checkpoint()
        with pytest.raises(InvalidSignature):
            spec_verify_cosignature(other.body, line, party.witness.name, public)


def test_witness_extends_refuses_rollback_and_non_extension(
    log: AuditLog, sink: SignedLogSink, log_key: EventSigner, witness_urls: list[str]
) -> None:
    _fill(sink, 4)
    cp4 = log.checkpoint()
    _fill(sink, 3)
    cp7 = log.checkpoint()
    with witnesses(witness_urls[:1], log_key, LOG_ID) as (party,):
        w = party.witness
        w.add_checkpoint(add_checkpoint_request(0, [], cp4.note))
        w.add_checkpoint(add_checkpoint_request(4, log.consistency_proof(4, 7), cp7.note))
        # rollback: the log shows size 4 again, claiming the witness held 4
        with pytest.raises(AuditWitnessError) as err:
            w.add_checkpoint(add_checkpoint_request(4, [], cp4.note))
        assert (err.value.status, err.value.known_size) == (409, 7)
        # rollback with the right old size: old above the new size
        with pytest.raises(AuditWitnessError) as err:
            w.add_checkpoint(add_checkpoint_request(7, [], cp4.note))
        assert err.value.status == 400
        # a same-size checkpoint with another root: a fork
        with AuditLog.open(witness_urls[1], log_id=LOG_ID, signer=log_key) as forked:
            fsink = SignedLogSink(forked, EventSigner.generate("hdab-nl"))
            _fill(fsink, 7)
            f7 = forked.checkpoint()
            with pytest.raises(AuditWitnessError) as err:
                w.add_checkpoint(add_checkpoint_request(7, [], f7.note))
            assert (err.value.status, err.value.code) == (409, "WITNESS_FORK")
            # a larger checkpoint of the forked history: its proof cannot extend size 7
            _fill(fsink, 2)
            f9 = forked.checkpoint()
            with pytest.raises(AuditWitnessError) as err:
                w.add_checkpoint(add_checkpoint_request(7, forked.consistency_proof(7, 9), f9.note))
            assert (err.value.status, err.value.known_size) == (422, 7)
        assert party.store.witness_state(LOG_ID)[0] == 7  # type: ignore[index]


def test_witness_refuses_unknown_logs_and_bad_signatures(
    log: AuditLog, sink: SignedLogSink, log_key: EventSigner, witness_urls: list[str]
) -> None:
    _fill(sink, 2)
    cp = log.checkpoint()
    stranger = EventSigner.generate("hospital-a")  # same org name, another key
    with witnesses(witness_urls[:1], stranger, LOG_ID) as (party,):
        with pytest.raises(AuditWitnessError) as err:
            party.witness.add_checkpoint(add_checkpoint_request(0, [], cp.note))
        assert err.value.status == 403
    with witnesses(witness_urls[1:2], log_key, "another-log") as (party,):
        with pytest.raises(AuditWitnessError) as err:
            party.witness.add_checkpoint(add_checkpoint_request(0, [], cp.note))
        assert err.value.status == 404
    for bad in (b"", b"old x\n\n" + cp.note.encode(), b"old 0\nAAAA\n\n" + cp.note.encode()):
        with pytest.raises(AuditWitnessError) as err:
            parse_add_checkpoint(bad)
        assert err.value.status == 400


def test_witness_state_survives_a_restart(
    log: AuditLog, sink: SignedLogSink, log_key: EventSigner, witness_urls: list[str]
) -> None:
    _fill(sink, 3)
    first = make_witness("w.example/witness", witness_urls[0], log_key, LOG_ID)
    assert cosign(log, first) == 3
    first.store.close()
    _fill(sink, 2)
    again = make_witness("w.example/witness", witness_urls[0], log_key, LOG_ID)
    try:
        cp = log.checkpoint()
        with pytest.raises(AuditWitnessError) as err:  # a log pretending the witness is new
            again.witness.add_checkpoint(add_checkpoint_request(0, [], cp.note))
        assert (err.value.status, err.value.known_size) == (409, 3)
        assert cosign(log, again) == 5  # learns 3 from the 409, proves 3 -> 5
    finally:
        again.store.close()


def test_vkeys_round_trip() -> None:
    from audit_chain.note import SIG_COSIGNATURE_V1, NoteSigner, parse_vkey

    for _ in range(20):  # standard base64 keys often contain '+', the vkey separator
        jwk = trust.SigningKey.generate("EdDSA", uses=[trust.KeyUse.WITNESS]).private_jwk()
        verifier = NoteSigner.from_jwk("w.example/w", jwk, SIG_COSIGNATURE_V1).verifier()
        assert parse_vkey(verifier.vkey()) == verifier
