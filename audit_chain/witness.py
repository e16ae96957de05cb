"""A C2SP tlog-witness: cosign another organisation's checkpoints only if they extend what it saw.

Each organisation's service runs one. For every log it knows (origin -> the
log's Ed25519 verifier key) it keeps the newest checkpoint it cosigned, in the
same database as its own log (``audit_witness`` table), and answers
``add-checkpoint`` requests (c2sp.org/tlog-witness)::

    old <size>\\n<base64 proof hash>\\n...\\n\\n<checkpoint note>

with ``cosignature/v1`` signature lines, or refuses with the spec's status:
400 malformed / old size above the new size, 403 no valid log signature,
404 unknown origin, 409 old size is not what the witness holds (``known_size``
is sent back) or same size with another root, 422 consistency proof fails.
The check and the state update are one locked transaction per origin.

The log side (:func:`add_checkpoint_request`, :func:`read_cosignature`) is
here too; the HTTP transport lives in ``gateway``.

    witness = Witness(NoteSigner.from_jwk("hdab-ee/witness", jwk, SIG_COSIGNATURE_V1),
                      store, {"hospital-a": [log_vkey]})
    lines = witness.add_checkpoint(request_body)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from audit_chain import merkle
from audit_chain.errors import AuditError, AuditProofError, AuditWitnessError
from audit_chain.note import (
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    Cosignature,
    NoteSigner,
    NoteVerifier,
    b64,
    b64_decode,
    parse_checkpoint_body,
    parse_note,
    parse_signature_lines,
    verify_cosignature,
    verify_note_signature,
)
from audit_chain.storage import LogStore

MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 64 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed ``add-checkpoint`` request body."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str


def add_checkpoint_request(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The request body a log sends to a witness."""
    lines = [f"old {old_size}\n", *(b64(h) + "\n" for h in proof), "\n"]
    return ("".join(lines) + note).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    if len(body) > MAX_REQUEST_BYTES:
        raise AuditWitnessError("request too large", status=400, code="WITNESS_BAD_REQUEST")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuditWitnessError("request is not UTF-8", code="WITNESS_BAD_REQUEST") from exc
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or not lines[0].startswith("old "):
        raise AuditWitnessError(
            "request must start with 'old <size>', proof lines and a blank line",
            code="WITNESS_BAD_REQUEST",
        )
    size_text = lines[0][4:]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise AuditWitnessError("old size must be a decimal", code="WITNESS_BAD_REQUEST")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise AuditWitnessError("too many consistency proof lines", code="WITNESS_BAD_REQUEST")
    try:
        proof = tuple(b64_decode(line) for line in lines[1:])
    except AuditError as exc:
        raise AuditWitnessError("proof lines must be base64", code="WITNESS_BAD_REQUEST") from exc
    if any(len(h) != merkle.HASH_SIZE for h in proof):
        raise AuditWitnessError("proof hashes must be 32 bytes", code="WITNESS_BAD_REQUEST")
    return AddCheckpoint(int(size_text), proof, note)


class Witness:
    """Cosigns checkpoints of the logs in ``logs`` (origin -> verifier keys), state in ``store``."""

    def __init__(
        self,
        signer: NoteSigner,
        store: LogStore,
        logs: Mapping[str, Sequence[NoteVerifier]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if signer.sig_type != SIG_COSIGNATURE_V1:
            raise AuditWitnessError("a witness signs with a cosignature/v1 (0x04) key")
        for origin, keys in logs.items():
            if any(k.sig_type != SIG_ED25519 or k.name != origin for k in keys):
                raise AuditWitnessError(
                    f"log keys of {origin} must be Ed25519 notes named {origin}"
                )
        self.signer = signer
        self.store = store
        self.logs = {o: tuple(k) for o, k in logs.items()}
        self.clock = clock

    @property
    def name(self) -> str:
        return self.signer.name

    def verifier(self) -> NoteVerifier:
        return self.signer.verifier()

    def add_checkpoint(self, body: bytes) -> str:
        """Check a request and return the cosignature line(s); raises AuditWitnessError to refuse."""
        request = parse_add_checkpoint(body)
        try:
            note = parse_note(request.note)
            origin, size, root = parse_checkpoint_body(note.text)
        except AuditError as exc:
            raise AuditWitnessError(f"not a checkpoint: {exc}", code="WITNESS_BAD_REQUEST") from exc
        keys = self.logs.get(origin)
        if keys is None:
            raise AuditWitnessError("unknown log origin", status=404, code="WITNESS_UNKNOWN_LOG")
        log_sig = None
        for key in keys:
            try:
                log_sig = verify_note_signature(note, key)
            except AuditError as exc:
                raise AuditWitnessError(
                    "log signature does not verify", status=403, code="WITNESS_BAD_SIGNATURE"
                ) from exc
            if log_sig is not None:
                break
        if log_sig is None:
            raise AuditWitnessError(
                "no signature by a known key of the log", status=403, code="WITNESS_BAD_SIGNATURE"
            )
        if request.old_size > size:
            raise AuditWitnessError(
                f"old size {request.old_size} is above the checkpoint size {size}",
                code="WITNESS_BAD_REQUEST",
            )
        if size == 0 and root != merkle.EMPTY_ROOT:
            raise AuditWitnessError("empty tree with a non-empty root", code="WITNESS_BAD_REQUEST")
        cosignature: list[str] = []

        def step(known_size: int, known_root: bytes | None) -> tuple[int, bytes, str]:
            if request.old_size != known_size:
                raise AuditWitnessError(
                    f"old size {request.old_size} is not the size {known_size} this witness "
                    f"cosigned for {origin}",
                    status=409,
                    known_size=known_size,
                    code="WITNESS_CONFLICT",
                )
            if known_root is not None and request.old_size == size:
                if known_root != root:
                    raise AuditWitnessError(
                        f"size {size} was cosigned with another root: the log is forked",
                        status=409,
                        known_size=known_size,
                        code="WITNESS_FORK",
                    )
            elif request.old_size == 0:
                if request.proof:
                    raise AuditWitnessError(
                        "the proof must be empty from size 0", code="WITNESS_BAD_REQUEST"
                    )
            else:
                assert known_root is not None
                try:
                    merkle.verify_consistency(
                        request.old_size, size, list(request.proof), known_root, root
                    )
                except AuditProofError as exc:
                    raise AuditWitnessError(
                        f"size {size} does not extend the cosigned size {known_size}: {exc}",
                        status=422,
                        known_size=known_size,
                        code="WITNESS_BAD_PROOF",
                    ) from exc
            line = self.signer.cosign_line(note.text, int(self.clock()))
            cosignature.append(line)
            stored = note.text + "\n" + log_sig.line() + line
            return size, root, stored

        self.store.witness_advance(origin, step)
        return cosignature[0]

    def latest(self, origin: str) -> str | None:
        """The newest checkpoint cosigned for ``origin``, with the log's and our signature."""
        state = self.store.witness_state(origin)
        return None if state is None else state[2]


def read_cosignature(
    body: str, response: str, witness: NoteVerifier, *, now: float | None = None
) -> Cosignature:
    """The witness's verified cosignature of checkpoint ``body`` from an add-checkpoint response."""
    not_after = int((time.time() if now is None else now) + 300)
    signatures = parse_signature_lines(response)
    for sig in signatures:
        if sig.name == witness.name and sig.key_id == witness.key_id:
            return verify_cosignature(body, sig, witness, not_after=not_after)
    raise AuditWitnessError(f"response carries no cosignature by {witness.name}", status=502)


def load_vkeys(lines: Iterable[str]) -> list[NoteVerifier]:
    """Verifier keys from text lines (blank lines and ``#`` comments skipped)."""
    from audit_chain.note import parse_vkey

    return [parse_vkey(line) for line in lines if line.strip() and not line.startswith("#")]


__all__ = [
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "Witness",
    "add_checkpoint_request",
    "load_vkeys",
    "parse_add_checkpoint",
    "read_cosignature",
]
