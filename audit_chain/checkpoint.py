"""Checkpoints (signed tree heads) and the client that keeps the newest one it accepted.

A checkpoint is a compact JWS (``typ`` ``ehds-checkpoint+jws``) signed by the
log's key over::

    {"v": 1, "origin": <log id>, "size": <tree size>, "root": "sha256:<hex>", "time": "...Z"}

``CheckpointVerifier`` is what a hospital, an HDAB or a data user runs against a
log it does not control (RFC 9162 §8.1.2). It remembers the newest checkpoint it
accepted and accepts a newer one only together with a consistency proof from
the held size. That catches:

* rollback / truncation: a checkpoint smaller than the held one (``AUDIT_ROLLBACK``);
* forks: a same-size checkpoint with another root, or a larger one whose
  consistency proof fails (``AUDIT_FORK``) -- the log showed two histories.

    client = CheckpointVerifier(trust, origin="hospital-a", log_org="hospital-a")
    client.update(log)                        # any CheckpointSource, e.g. an AuditLog
    client.verify_inclusion(token, index, log.inclusion_proof(index, client.size))
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from audit_chain import merkle
from audit_chain.errors import (
    AuditCheckpointError,
    AuditError,
    AuditForkError,
    AuditProofError,
    AuditRollbackError,
)
from audit_chain.events import utc_now
from audit_chain.schema import HASH, MAX_COUNT, SCHEMA_VERSION, check_time, is_identifier
from audit_chain.signers import EventSigner, TrustStore, parse_token, verify_token
from trust import canonical_json

CHECKPOINT_TYP = "ehds-checkpoint+jws"
CHECKPOINT_KEYS = frozenset({"v", "origin", "size", "root", "time"})


def root_text(root: bytes) -> str:
    return "sha256:" + root.hex()


def parse_root(text: object) -> bytes:
    if not isinstance(text, str) or not HASH.fullmatch(text):
        raise AuditCheckpointError("root must be sha256:<64 lowercase hex>")
    return bytes.fromhex(text[7:])


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head. ``token`` is the compact JWS; the rest is its payload."""

    origin: str
    size: int
    root: bytes
    time: str
    kid: str
    token: str

    @property
    def root_hex(self) -> str:
        return self.root.hex()

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": root_text(self.root),
            "time": self.time,
            "kid": self.kid,
            "jws": self.token,
        }


def sign_checkpoint(
    signer: EventSigner, origin: str, size: int, root: bytes, *, time: str | None = None
) -> Checkpoint:
    """Sign a tree head for ``origin`` (the log id)."""
    if not is_identifier(origin):
        raise AuditCheckpointError("origin must be an identifier")
    if len(root) != merkle.HASH_SIZE or not 0 <= size <= MAX_COUNT:
        raise AuditCheckpointError("bad tree size or root")
    when = time or utc_now()
    payload = {
        "v": SCHEMA_VERSION,
        "origin": origin,
        "size": size,
        "root": root_text(root),
        "time": when,
    }
    token = signer.sign(canonical_json(payload), CHECKPOINT_TYP)
    return Checkpoint(origin, size, root, when, signer.kid, token)


def _from_payload(raw: bytes, kid: str, token: str) -> Checkpoint:
    try:
        p = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AuditCheckpointError("checkpoint payload is not JSON") from exc
    if not isinstance(p, dict) or set(p) != CHECKPOINT_KEYS or p["v"] != SCHEMA_VERSION:
        raise AuditCheckpointError(
            "checkpoint payload must be exactly {v, origin, size, root, time}"
        )
    size = p["size"]
    if type(size) is not int or not 0 <= size <= MAX_COUNT:
        raise AuditCheckpointError("checkpoint size must be a non-negative integer")
    if not is_identifier(p["origin"]):
        raise AuditCheckpointError("checkpoint origin must be an identifier")
    try:
        when = check_time(p["time"])
    except AuditError as exc:
        raise AuditCheckpointError(str(exc)) from exc
    if canonical_json(p) != raw:
        raise AuditCheckpointError("checkpoint payload is not canonical JSON")
    return Checkpoint(p["origin"], size, parse_root(p["root"]), when, kid, token)


def parse_checkpoint(token: str | bytes) -> Checkpoint:
    """Decode a checkpoint WITHOUT checking its signature (display only)."""
    try:
        parsed = parse_token(token, CHECKPOINT_TYP)
    except AuditError as exc:
        raise AuditCheckpointError(f"malformed checkpoint: {exc}") from exc
    return _from_payload(parsed.payload, parsed.kid, parsed.token)


def verify_checkpoint(
    token: str | bytes,
    trust: TrustStore,
    *,
    origin: str | None = None,
    log_org: str | None = None,
) -> Checkpoint:
    """Verify a checkpoint's signature (pinned alg), shape, origin and signer organisation.

    Signature problems keep their own codes (``AUDIT_BAD_SIGNATURE``,
    ``AUDIT_UNKNOWN_KEY``, ``AUDIT_ALG_MISMATCH``); everything else is
    ``AUDIT_BAD_CHECKPOINT``.
    """
    parsed, key = verify_token(token, trust, CHECKPOINT_TYP)
    cp = _from_payload(parsed.payload, key.kid, parsed.token)
    if origin is not None and cp.origin != origin:
        raise AuditCheckpointError("checkpoint is for another log (origin differs)")
    if log_org is not None and key.org != log_org:
        raise AuditCheckpointError(
            f"checkpoint signed by key {key.kid}, which does not belong to the log"
        )
    return cp


class CheckpointSource(Protocol):
    """What a checkpoint client needs from a log (an ``AuditLog`` or an HTTP client)."""

    def checkpoint(self) -> Checkpoint: ...

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]: ...


class CheckpointVerifier:
    """Holds the newest accepted checkpoint of one log; accepts only consistent successors.

    ``history`` keeps the checkpoints accepted so far (bounded): handing them to
    ``verify_log(..., trusted=client.history)`` tells how far back a fork goes.
    With ``path`` the state survives restarts (written atomically after each accept).
    """

    HISTORY_LIMIT = 4096

    def __init__(
        self,
        trust: TrustStore,
        origin: str,
        *,
        log_org: str | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.trust = trust
        self.origin = origin
        self.log_org = log_org
        self.path = Path(path) if path is not None else None
        self.history: list[Checkpoint] = []
        if self.path is not None and self.path.exists():
            self._load()

    @property
    def latest(self) -> Checkpoint | None:
        return self.history[-1] if self.history else None

    @property
    def size(self) -> int:
        return self.latest.size if self.latest else 0

    def accept(
        self, checkpoint: Checkpoint | str, proof: Sequence[bytes] | None = None
    ) -> Checkpoint:
        """Accept ``checkpoint`` if it is valid and extends the held one; return the newest."""
        token = checkpoint.token if isinstance(checkpoint, Checkpoint) else checkpoint
        cp = verify_checkpoint(token, self.trust, origin=self.origin, log_org=self.log_org)
        held = self.latest
        if held is None:
            self._keep(cp)
            return cp
        if cp.size < held.size:
            raise AuditRollbackError(
                f"log presented size {cp.size} after size {held.size} was accepted: rollback or truncation",
                index=cp.size,
            )
        if cp.size == held.size:
            if cp.root != held.root:
                raise AuditForkError(
                    f"two different roots for size {cp.size}: the log is forked", index=held.size
                )
            return held
        if held.size == 0:
            if held.root != merkle.EMPTY_ROOT:
                raise AuditCheckpointError("held checkpoint of size 0 has a non-empty root")
        else:
            try:
                merkle.verify_consistency(held.size, cp.size, list(proof or []), held.root, cp.root)
            except AuditProofError as exc:
                raise AuditForkError(
                    f"size {cp.size} is not an extension of the accepted size {held.size} ({exc}): "
                    "the log is forked or rewritten",
                    index=held.size,
                ) from exc
        self._keep(cp)
        return cp

    def update(self, source: CheckpointSource) -> Checkpoint:
        """Fetch the source's newest checkpoint and a consistency proof, then :meth:`accept`."""
        cp = source.checkpoint()
        held = self.latest
        proof: list[bytes] = []
        if held is not None and 0 < held.size < cp.size:
            proof = source.consistency_proof(held.size, cp.size)
        return self.accept(cp, proof)

    def verify_inclusion(self, leaf: bytes | str, index: int, proof: Sequence[bytes]) -> None:
        """Check that entry bytes ``leaf`` sit at ``index`` of the held checkpoint's tree."""
        held = self.latest
        if held is None:
            raise AuditCheckpointError("no checkpoint accepted yet")
        data = leaf.encode("ascii") if isinstance(leaf, str) else leaf
        merkle.verify_inclusion(merkle.leaf_hash(data), index, held.size, list(proof), held.root)

    def _keep(self, cp: Checkpoint) -> None:
        self.history.append(cp)
        del self.history[: -self.HISTORY_LIMIT]
        if self.path is not None:
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(
                json.dumps({"origin": self.origin, "checkpoints": [c.token for c in self.history]})
            )
            os.replace(tmp, self.path)

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            tokens = data["checkpoints"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AuditCheckpointError(f"cannot read checkpoint state {self.path}") from exc
        for token in tokens:
            self.history.append(
                verify_checkpoint(token, self.trust, origin=self.origin, log_org=self.log_org)
            )


__all__ = [
    "CHECKPOINT_TYP",
    "Checkpoint",
    "CheckpointSource",
    "CheckpointVerifier",
    "parse_checkpoint",
    "parse_root",
    "root_text",
    "sign_checkpoint",
    "verify_checkpoint",
]
