"""C2SP signed notes, checkpoints and cosignatures (Ed25519): the bytes other tools read.

Formats (c2sp.org/signed-note, /tlog-checkpoint, /tlog-cosignature)::

    <origin>\\n<tree size>\\n<base64 root>\\n          <- checkpoint body (the note text)
    \\n
    — <key name> base64(key ID[4] || signature)\\n     <- one line per signature

* log signature: Ed25519 over the body, key name = origin,
  key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4];
* witness cosignature (``cosignature/v1``): Ed25519 over
  ``"cosignature/v1\\ntime <T>\\n" || body``, signature bytes
  ``key ID || u64 big-endian T || signature``, key ID type byte 0x04.

Verifier keys are C2SP *vkeys*: ``<name>+<key ID hex>+base64(type || public key)``.
Why these formats and not our JWS: off-the-shelf transparency tooling (witnesses,
monitors, ``note`` libraries) reads them, so other organisations can check our
logs without our code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit_chain.errors import (
    AuditCheckpointError,
    AuditKeyError,
    AuditKeyUseError,
    AuditSignatureError,
)

USES_MEMBER = "ehds_uses"
SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
COSIGNATURE_HEADER = "cosignature/v1\n"
EM_DASH = "\u2014"
MAX_SIGNATURES = 64
MAX_NOTE_BYTES = 64 * 1024
_NAME = re.compile(r"[^\s+\u2014]+")
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64_decode(text: str) -> bytes:
    """Strict standard base64 (RFC 4648 §4): canonical, with padding."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise AuditSignatureError("malformed base64") from exc
    if b64(raw) != text:
        raise AuditSignatureError("non-canonical base64")
    return raw


def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    """The 4-byte C2SP key ID: SHA-256(name || 0x0A || type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


def check_key_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise AuditKeyError("note key names must be non-empty, without spaces or '+'")
    return name


# ------------------------------------------------------------ keys


@dataclass(frozen=True)
class NoteVerifier:
    """A public key as a note verifier: (name, type, key ID, Ed25519 key)."""

    name: str
    sig_type: int
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public)

    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{b64(bytes([self.sig_type]) + self.public)}"

    def verify(self, message: bytes, signature: bytes) -> None:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError) as exc:
            raise AuditSignatureError(f"note signature by {self.name} does not verify") from exc


def parse_vkey(text: str) -> NoteVerifier:
    """``name+hexid+base64(type||key)`` -> verifier (Ed25519 types 0x01 and 0x04 only)."""
    parts = text.strip().split("+", 2)  # the base64 key may itself contain '+'
    if len(parts) != 3:
        raise AuditKeyError("a verifier key is <name>+<key ID hex>+<base64 key>")
    name, hexid, material = parts
    check_key_name(name)
    try:
        raw = b64_decode(material)
    except AuditSignatureError as exc:
        raise AuditKeyError("verifier key material is not base64") from exc
    if len(raw) != 33 or raw[0] not in (SIG_ED25519, SIG_COSIGNATURE_V1):
        raise AuditKeyError("verifier key must be an Ed25519 (0x01) or cosignature/v1 (0x04) key")
    verifier = NoteVerifier(name, raw[0], raw[1:])
    if verifier.key_id.hex() != hexid:
        raise AuditKeyError(f"verifier key {name}: key ID does not match the key")
    return verifier


class NoteSigner:
    """An Ed25519 private key that signs notes (type 0x01) or cosigns checkpoints (0x04)."""

    def __init__(self, name: str, private: ed25519.Ed25519PrivateKey, sig_type: int) -> None:
        self.name = check_key_name(name)
        self._key = private
        self.sig_type = sig_type
        self.public = private.public_key().public_bytes_raw()
        self.key_id = key_id(name, sig_type, self.public)

    @classmethod
    def from_jwk(cls, name: str, jwk: Mapping[str, Any], sig_type: int = SIG_ED25519) -> NoteSigner:
        """From a private Ed25519 JWK (``{"kty": "OKP", "crv": "Ed25519", "d": ...}``)."""
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" not in jwk:
            raise AuditKeyError("C2SP notes are signed with Ed25519 keys (OKP/Ed25519)")
        uses = jwk.get(USES_MEMBER)  # declared uses (trust.keys): a log key or a witness key
        need = "witness" if sig_type == SIG_COSIGNATURE_V1 else "audit"
        if isinstance(uses, list) and need not in uses:
            raise AuditKeyUseError(f"key is not declared for {need} (declares {sorted(uses)})")
        d = str(jwk["d"])
        raw = base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))
        return cls(name, ed25519.Ed25519PrivateKey.from_private_bytes(raw), sig_type)

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.sig_type, self.public)

    def sign_line(self, body: str) -> str:
        """A signature line (type 0x01) over the note text ``body``."""
        sig = self._key.sign(body.encode())
        return f"{EM_DASH} {self.name} {b64(self.key_id + sig)}\n"

    def cosign_line(self, body: str, timestamp: int) -> str:
        """A ``cosignature/v1`` line over a checkpoint body at POSIX time ``timestamp``."""
        if not 0 <= timestamp < 2**63:
            raise AuditCheckpointError("cosignature timestamp out of range")
        ts = timestamp.to_bytes(8, "big")
        sig = self._key.sign(cosigned_message(body, timestamp))
        return f"{EM_DASH} {self.name} {b64(self.key_id + ts + sig)}\n"


def cosigned_message(body: str, timestamp: int) -> bytes:
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{body}".encode()


# ------------------------------------------------------------ notes


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    data: bytes  # after the key ID

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {b64(self.key_id + self.data)}\n"


@dataclass(frozen=True)
class Note:
    text: str  # the note text, ending in a newline
    signatures: tuple[NoteSignature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def parse_signature_lines(text: str) -> list[NoteSignature]:
    """Signature lines ``— name base64`` (each ending in a newline)."""
    if not text.endswith("\n"):
        raise AuditCheckpointError("signature lines must end in a newline")
    out = []
    for line in text[:-1].split("\n"):
        prefix = EM_DASH + " "
        if not line.startswith(prefix):
            raise AuditCheckpointError("malformed note signature line")
        parts = line[len(prefix) :].split(" ")
        if len(parts) != 2:
            raise AuditCheckpointError("malformed note signature line")
        name, material = parts
        check_key_name(name)
        raw = b64_decode(material)
        if len(raw) < 5:
            raise AuditCheckpointError("note signature too short")
        out.append(NoteSignature(name, raw[:4], raw[4:]))
    if len(out) > MAX_SIGNATURES:
        raise AuditCheckpointError("too many note signatures")
    return out


def parse_note(data: str | bytes) -> Note:
    """Split a signed note into its text and signature lines (nothing verified)."""
    if isinstance(data, bytes):
        if len(data) > MAX_NOTE_BYTES:
            raise AuditCheckpointError("note too large")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AuditCheckpointError("note is not UTF-8") from exc
    if len(data) > MAX_NOTE_BYTES:
        raise AuditCheckpointError("note too large")
    if any(ord(c) < 0x20 and c != "\n" for c in data):
        raise AuditCheckpointError("note contains control characters")
    cut = data.rfind("\n\n")
    if cut < 0:
        raise AuditCheckpointError("note has no signatures")
    text, sigs = data[: cut + 1], data[cut + 2 :]
    return Note(text, tuple(parse_signature_lines(sigs)))


def verify_note_signature(
    note: Note, verifier: NoteVerifier, message: bytes | None = None
) -> NoteSignature | None:
    """The verified signature of ``verifier`` on ``note`` (None when it did not sign).

    Signatures whose name or key ID differ are ignored, as the spec requires; a
    matching one that does not verify raises.
    """
    for sig in note.signatures:
        if sig.name == verifier.name and sig.key_id == verifier.key_id:
            verifier.verify(note.text.encode() if message is None else message, sig.data)
            return sig
    return None


# ------------------------------------------------------------ checkpoint bodies


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{b64(root)}\n"


def parse_checkpoint_body(text: str) -> tuple[str, int, bytes]:
    """``(origin, size, root)``; extension lines are refused (we never write them)."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise AuditCheckpointError("checkpoint text must be exactly origin, size and root lines")
    origin, size_text, root_text = lines[:3]
    if not origin or not _NAME.fullmatch(origin):
        raise AuditCheckpointError("checkpoint origin must be non-empty, without spaces or '+'")
    if not _SIZE.fullmatch(size_text):
        raise AuditCheckpointError("checkpoint size must be a decimal without leading zeroes")
    try:
        root = b64_decode(root_text)
    except AuditSignatureError as exc:
        raise AuditCheckpointError("checkpoint root is not base64") from exc
    if len(root) != 32:
        raise AuditCheckpointError("checkpoint root must be 32 bytes")
    return origin, int(size_text), root


# ------------------------------------------------------------ cosignatures


@dataclass(frozen=True)
class Cosignature:
    """A verified ``cosignature/v1``: who, when, over which checkpoint body."""

    witness: str
    key_id: bytes
    timestamp: int
    line: str


def verify_cosignature(
    body: str, sig: NoteSignature, verifier: NoteVerifier, *, not_after: int | None = None
) -> Cosignature:
    """Check one signature line as a cosignature/v1 of ``body`` by ``verifier``."""
    if verifier.sig_type != SIG_COSIGNATURE_V1:
        raise AuditKeyError(f"{verifier.name} is not a cosignature/v1 key")
    if sig.name != verifier.name or sig.key_id != verifier.key_id:
        raise AuditSignatureError("cosignature is from another key")
    if len(sig.data) != 8 + 64:
        raise AuditSignatureError("cosignature/v1 must be 8 timestamp bytes and 64 signature bytes")
    timestamp = int.from_bytes(sig.data[:8], "big")
    if timestamp >= 2**63:
        raise AuditSignatureError("cosignature timestamp out of range")
    if not_after is not None and timestamp > not_after:
        raise AuditSignatureError(f"cosignature by {verifier.name} is dated in the future")
    verifier.verify(cosigned_message(body, timestamp), sig.data[8:])
    return Cosignature(verifier.name, sig.key_id, timestamp, sig.line())


def find_cosignatures(
    body: str, signatures: Sequence[NoteSignature], witnesses: Sequence[NoteVerifier]
) -> list[Cosignature]:
    """Verified cosignatures of known witnesses among ``signatures`` (unknown keys ignored)."""
    out: list[Cosignature] = []
    for verifier in witnesses:
        for sig in signatures:
            if sig.name == verifier.name and sig.key_id == verifier.key_id:
                out.append(verify_cosignature(body, sig, verifier))
                break
    return out


__all__ = [
    "COSIGNATURE_HEADER",
    "SIG_COSIGNATURE_V1",
    "SIG_ED25519",
    "Cosignature",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "b64",
    "b64_decode",
    "checkpoint_body",
    "cosigned_message",
    "find_cosignatures",
    "key_id",
    "parse_checkpoint_body",
    "parse_note",
    "parse_signature_lines",
    "parse_vkey",
    "verify_cosignature",
    "verify_note_signature",
]
