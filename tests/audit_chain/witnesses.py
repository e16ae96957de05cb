"""Test support: in-process witnesses (the real :class:`audit_chain.witness.Witness`, each on its
own database) and a synchronous stand-in for ``gateway.witnessing`` that does the same
request/response exchange without HTTP (the HTTP path is tested in tests/gateway)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import trust
from audit_chain import EventSigner
from audit_chain.checkpoint import log_verifier
from audit_chain.errors import AuditWitnessError
from audit_chain.log import AuditLog
from audit_chain.note import SIG_COSIGNATURE_V1, NoteSigner
from audit_chain.storage import LogStore
from audit_chain.verify import WitnessPolicy
from audit_chain.witness import Witness, add_checkpoint_request, read_cosignature


@dataclass
class Party:
    witness: Witness
    store: LogStore


def make_witness(name: str, url: str, log_key: EventSigner, origin: str) -> Party:
    store = LogStore(url)
    signer = NoteSigner.from_jwk(
        name,
        trust.SigningKey.generate("EdDSA", uses=[trust.KeyUse.WITNESS]).private_jwk(),
        SIG_COSIGNATURE_V1,
    )
    return Party(Witness(signer, store, {origin: [log_verifier(log_key, origin)]}), store)


@contextmanager
def witnesses(urls: Sequence[str], log_key: EventSigner, origin: str) -> Iterator[list[Party]]:
    parties = [
        make_witness(f"w{i}.example/witness", u, log_key, origin) for i, u in enumerate(urls)
    ]
    try:
        yield parties
    finally:
        for p in parties:
            p.store.close()


def cosign(log: AuditLog, party: Party) -> int:
    """Submit the log's newest checkpoint to one witness (retrying once after a 409)."""
    cp = log.checkpoint()
    old = 0
    for _ in range(2):
        proof = log.consistency_proof(old, cp.size) if 0 < old < cp.size else []
        try:
            line = party.witness.add_checkpoint(add_checkpoint_request(old, proof, cp.note))
        except AuditWitnessError as exc:
            if exc.status == 409 and exc.known_size is not None and exc.known_size != old:
                old = exc.known_size
                continue
            raise
        cosig = read_cosignature(cp.body, line, party.witness.verifier())
        log.store.add_cosignatures(log.log_id, cp.size, [(cosig.witness, cosig.timestamp, line)])
        return cp.size
    raise AssertionError("witness kept answering 409")


def policy(parties: Sequence[Party], origin: str, quorum: int) -> WitnessPolicy:
    """Trust the parties' witnesses and read what each holds from its own database."""
    notes = tuple(n for p in parties if (n := p.witness.latest(origin)) is not None)
    return WitnessPolicy(tuple(p.witness.verifier() for p in parties), quorum, notes)
