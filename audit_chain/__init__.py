"""Tamper-evident audit chain: JWS-signed events in an append-only RFC 9162 Merkle log.

Owns signed event payloads, the Merkle tree hashing, inclusion/consistency proofs,
signed checkpoints, storage (SQLite/PostgreSQL through SQLModel) and verification.

May import: nothing else of ours. Other packages write to it through the small
``AuditSink`` protocol they define themselves (structural typing), never by import.

Public API (details in each module's docstring)::

    from audit_chain import AuditLog, EventSigner, SignedLogSink, TrustStore, verify_log

    log_key = EventSigner.generate("hospital-a")                 # EdDSA; or alg="ES256"
    log = AuditLog.open("audit.db", log_id="hospital-a", signer=log_key)   # or postgresql://...
    sink = SignedLogSink(log, EventSigner.generate("hospital-a"))
    sink.record("data.extracted", subject={"permit": jti}, details={"rows": 120})
    cp = log.checkpoint()                                        # C2SP checkpoint note (origin, size, root)
    proof = log.inclusion_proof(0, cp.size); cproof = log.consistency_proof(1, cp.size)
    report = verify_log(log, trust)                              # VerifyReport(ok, index, reason, ...)
    client = CheckpointVerifier(trust, origin="hospital-a"); client.update(log)
    witness = Witness(NoteSigner.from_jwk("org/witness", jwk, SIG_COSIGNATURE_V1), store, logs)
    verify_log(log, trust, log_org="hospital-a", witnesses=WitnessPolicy(vkeys, quorum, notes))
"""

from audit_chain.checkpoint import (
    Checkpoint,
    CheckpointVerifier,
    log_verifier,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from audit_chain.errors import AuditError, AuditSchemaError
from audit_chain.events import EVENT_TYP, Event, build_event, sign_event, verify_event
from audit_chain.log import AuditLog, Entry
from audit_chain.merkle import verify_consistency, verify_inclusion
from audit_chain.note import SIG_COSIGNATURE_V1, NoteSigner, NoteVerifier, parse_vkey
from audit_chain.schema import EVENT_SCHEMAS
from audit_chain.signers import EventSigner, TrustedKey, TrustStore
from audit_chain.sink import SignedLogSink
from audit_chain.verify import VerifyReport, WitnessPolicy, verify_log
from audit_chain.witness import Witness, add_checkpoint_request, read_cosignature

__all__ = [
    "EVENT_SCHEMAS",
    "EVENT_TYP",
    "SIG_COSIGNATURE_V1",
    "AuditError",
    "AuditLog",
    "AuditSchemaError",
    "Checkpoint",
    "CheckpointVerifier",
    "Entry",
    "Event",
    "EventSigner",
    "NoteSigner",
    "NoteVerifier",
    "SignedLogSink",
    "TrustStore",
    "TrustedKey",
    "VerifyReport",
    "Witness",
    "WitnessPolicy",
    "add_checkpoint_request",
    "build_event",
    "log_verifier",
    "parse_checkpoint",
    "parse_vkey",
    "read_cosignature",
    "sign_checkpoint",
    "sign_event",
    "verify_checkpoint",
    "verify_consistency",
    "verify_event",
    "verify_inclusion",
    "verify_log",
]
