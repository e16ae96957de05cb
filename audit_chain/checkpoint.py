"""Checkpoints (signed tree heads) in the C2SP tlog-checkpoint format, and the client that keeps the newest.

A checkpoint is a C2SP signed note (see :mod:`audit_chain.note`)::

    hospital-a                      <- origin: the log's id, the organisation's log name
    12                              <- tree size
    <base64 RFC 9162 root>
    <blank line>
    — hospital-a <base64(key ID || Ed25519 signature)>

signed by the log's Ed25519 key with key name = origin. Witness cosignatures
(``cosignature/v1``) are further signature lines on the same note.

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

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from audit_chain import merkle
from audit_chain.errors import (
    AuditCheckpointError,
    AuditForkError,
    AuditKeyError,
    AuditProofError,
    AuditRollbackError,
)
from audit_chain.note import (
    SIG_ED25519,
    NoteSigner,
    NoteVerifier,
    checkpoint_body,
    parse_checkpoint_body,
    parse_note,
    verify_note_signature,
)
from audit_chain.schema import HASH, MAX_COUNT, is_identifier
from audit_chain.signers import EventSigner, TrustedKey, TrustStore


def root_text(root: bytes) -> str:
    return "sha256:" + root.hex()


def parse_root(text: object) -> bytes:
    if not isinstance(text, str) or not HASH.fullmatch(text):
        raise AuditCheckpointError("root must be sha256:<64 lowercase hex>")
    return bytes.fromhex(text[7:])


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head. ``note`` is the C2SP signed note; the rest is read from it.

    ``kid`` is the RFC 7638 thumbprint of the log key whose signature was
    checked (None when only parsed).
    """

    origin: str
    size: int
    root: bytes
    kid: str | None
    note: str

    @property
    def token(self) -> str:
        """The signed note (what earlier versions called the checkpoint token)."""
        return self.note

    @property
    def body(self) -> str:
        return checkpoint_body(self.origin, self.size, self.root)

    @property
    def root_hex(self) -> str:
        return self.root.hex()

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": root_text(self.root),
            "kid": self.kid,
            "note": self.note,
        }


def log_note_signer(signer: EventSigner | NoteSigner, origin: str) -> NoteSigner:
    """The log's key as a C2SP note signer named ``origin`` (Ed25519 only)."""
    if isinstance(signer, NoteSigner):
        if signer.name != origin:
            raise AuditCheckpointError("a log's note key name must be its origin")
        return signer
    if signer.alg != "EdDSA":
        raise AuditKeyError("C2SP checkpoints need an Ed25519 (EdDSA) log key")
    return NoteSigner.from_jwk(origin, signer.to_json()["jwk"], SIG_ED25519)


def log_verifier(key: TrustedKey | EventSigner, origin: str) -> NoteVerifier:
    """The C2SP verifier (vkey via ``.vkey()``) of a log key for ``origin``."""
    trusted = key.trusted_key() if isinstance(key, EventSigner) else key
    if trusted.alg != "EdDSA":
        raise AuditKeyError("C2SP checkpoints need an Ed25519 (EdDSA) log key")
    x = trusted.jwk["x"]
    return NoteVerifier(origin, SIG_ED25519, base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))


def sign_checkpoint(
    signer: EventSigner | NoteSigner, origin: str, size: int, root: bytes
) -> Checkpoint:
    """Sign a tree head for ``origin`` (the log id) as a C2SP checkpoint note."""
    if not is_identifier(origin):
        raise AuditCheckpointError("origin must be an identifier")
    if len(root) != merkle.HASH_SIZE or not 0 <= size <= MAX_COUNT:
        raise AuditCheckpointError("bad tree size or root")
    note_signer = log_note_signer(signer, origin)
    body = checkpoint_body(origin, size, root)
    kid = signer.kid if isinstance(signer, EventSigner) else None
    return Checkpoint(origin, size, root, kid, body + "\n" + note_signer.sign_line(body))


def parse_checkpoint(note: str | bytes) -> Checkpoint:
    """Decode a checkpoint WITHOUT checking its signature (display only)."""
    parsed = parse_note(note)
    origin, size, root = parse_checkpoint_body(parsed.text)
    if size > MAX_COUNT:
        raise AuditCheckpointError("checkpoint size out of range")
    return Checkpoint(origin, size, root, None, parsed.render())


_VERIFIERS: dict[tuple[str, str], NoteVerifier] = {}


def _verifier(key: TrustedKey, origin: str) -> NoteVerifier:
    cached = _VERIFIERS.get((origin, key.kid))
    if cached is None:
        if len(_VERIFIERS) > 4096:
            _VERIFIERS.clear()
        cached = _VERIFIERS[(origin, key.kid)] = log_verifier(key, origin)
    return cached


def verify_checkpoint(
    note: str | bytes,
    trust: TrustStore,
    *,
    origin: str | None = None,
    log_org: str | None = None,
) -> Checkpoint:
    """Verify a checkpoint note: a valid Ed25519 signature by a trusted key of the log.

    The signature line must carry key name = origin and the C2SP key ID of a
    trusted EdDSA key (of ``log_org`` when given). Other signature lines (e.g.
    witness cosignatures) are ignored here. A failing signature of a known key
    is ``AUDIT_BAD_SIGNATURE``; no known key is ``AUDIT_UNKNOWN_KEY``; anything
    else is ``AUDIT_BAD_CHECKPOINT``.
    """
    cp = parse_checkpoint(note)
    if origin is not None and cp.origin != origin:
        raise AuditCheckpointError("checkpoint is for another log (origin differs)")
    if not is_identifier(cp.origin):
        raise AuditCheckpointError("checkpoint origin must be an identifier")
    parsed = parse_note(note)
    others = False
    for key in trust:
        if key.alg != "EdDSA":
            continue
        if log_org is not None and key.org != log_org:
            others = True
            continue
        if verify_note_signature(parsed, _verifier(key, cp.origin)) is not None:
            return Checkpoint(cp.origin, cp.size, cp.root, key.kid, cp.note)
    if others and log_org is not None:
        for key in trust:
            if (
                key.alg == "EdDSA"
                and key.org != log_org
                and verify_note_signature(parsed, _verifier(key, cp.origin)) is not None
            ):
                raise AuditCheckpointError(
                    f"checkpoint signed by key {key.kid}, which does not belong to the log"
                )
    raise AuditKeyError("checkpoint carries no signature by a trusted key of the log")


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
                json.dumps({"origin": self.origin, "checkpoints": [c.note for c in self.history]})
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
    "Checkpoint",
    "CheckpointSource",
    "CheckpointVerifier",
    "log_note_signer",
    "log_verifier",
    "parse_checkpoint",
    "parse_root",
    "root_text",
    "sign_checkpoint",
    "verify_checkpoint",
]
