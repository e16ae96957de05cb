"""Tamper-evident audit chain: JWS-signed events in an append-only RFC 9162 Merkle log.

Owns signed event payloads, the Merkle tree hashing, inclusion/consistency proofs,
signed checkpoints, storage (SQLite/PostgreSQL through SQLModel) and verification.

May import: nothing else of ours. Other packages write to it through the small
``AuditSink`` protocol they define themselves (structural typing), never by import.
"""
