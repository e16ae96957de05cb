"""Errors of the audit chain, each with a stable ``code``.

The codes are part of the public contract: the CLI prints ``[CODE]``, HTTP
services put ``code`` into problem+json and ``verify_log`` reports the same
strings as ``reason``. Messages carry indexes, sizes, key ids and hashes only,
never event contents (which could, if a producer misbehaved, hold personal data).
"""

from __future__ import annotations

from trust import TrustError


class AuditError(TrustError):
    """Base class: everything the audit chain raises on purpose."""

    code: str = "AUDIT_ERROR"

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class AuditSchemaError(AuditError):
    """An event payload outside its schema (unknown field, type or value)."""

    code = "AUDIT_SCHEMA"


class AuditKeyError(AuditError):
    """A malformed key, or a key the trust store does not know."""

    code = "AUDIT_UNKNOWN_KEY"


class AuditKeyUseError(AuditKeyError):
    """A key declared for another use (e.g. a witness key signing an audit event)."""

    code = "AUDIT_KEY_USE"


class AuditAlgorithmError(AuditError):
    """A JWS whose ``alg`` differs from the algorithm pinned for its key."""

    code = "AUDIT_ALG_MISMATCH"


class AuditSignatureError(AuditError):
    """A JWS that is malformed or whose signature does not verify."""

    code = "AUDIT_BAD_SIGNATURE"


class AuditActorError(AuditError):
    """Payload ``actor`` (org, kid) disagrees with the key that signed it."""

    code = "AUDIT_ACTOR_MISMATCH"


class AuditProofError(AuditError):
    """An inclusion or consistency proof that does not verify, or bad proof arguments."""

    code = "AUDIT_BAD_PROOF"


class AuditRangeError(AuditError):
    """An index or tree size outside the log."""

    code = "AUDIT_OUT_OF_RANGE"


class AuditCheckpointError(AuditError):
    """A checkpoint that is malformed, wrongly signed or for another log."""

    code = "AUDIT_BAD_CHECKPOINT"


class AuditRollbackError(AuditCheckpointError):
    """A checkpoint older (smaller) than one already accepted: rollback or truncation."""

    code = "AUDIT_ROLLBACK"


class AuditForkError(AuditCheckpointError):
    """A checkpoint that is not an extension of the one already accepted: a fork."""

    code = "AUDIT_FORK"


class AuditHeadError(AuditError):
    """The log's head disagrees with its newest checkpoint: written behind the signer's back."""

    code = "AUDIT_HEAD_MISMATCH"


class AuditPositionError(AuditError):
    """An event signed for another log or another index than where it is (or would be) stored."""

    code = "AUDIT_MISPLACED_EVENT"


class AuditWitnessError(AuditError):
    """A witness refused a checkpoint (``status``: the tlog-witness HTTP status; ``known_size``)."""

    code = "AUDIT_WITNESS_REFUSED"

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        known_size: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, index=known_size)
        self.status = status
        self.known_size = known_size
        if code is not None:
            self.code = code


class AuditStorageError(AuditError):
    """The database refused an operation or holds something the log cannot read."""

    code = "AUDIT_STORAGE"


class AuditConfigError(AuditError):
    """A bad database URL, log id or missing signer."""

    code = "AUDIT_CONFIG"


__all__ = [
    "AuditActorError",
    "AuditAlgorithmError",
    "AuditCheckpointError",
    "AuditConfigError",
    "AuditError",
    "AuditForkError",
    "AuditHeadError",
    "AuditKeyError",
    "AuditKeyUseError",
    "AuditPositionError",
    "AuditProofError",
    "AuditRangeError",
    "AuditRollbackError",
    "AuditSchemaError",
    "AuditSignatureError",
    "AuditStorageError",
    "AuditWitnessError",
]
