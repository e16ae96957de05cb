"""Reason codes: the one stable vocabulary for every permit decision.

A decision carries exactly one code. Codes are lowercase so they pass the audit
schema's code pattern (``^[a-z0-9_.:-]{1,64}$``) unchanged, and they name the
failed *check*, never anything about the data behind the permit.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    """Why the guard (or the verifier) allowed or denied; stable across releases."""

    OK = "ok"

    # token shape and JOSE header (checked before any cryptography)
    TOKEN_MALFORMED = "token_malformed"
    TYPE_MISMATCH = "type_mismatch"
    ALG_NONE = "alg_none"
    ALG_SYMMETRIC = "alg_symmetric"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    ALG_MISMATCH = "alg_mismatch"
    KID_UNKNOWN = "kid_unknown"
    EMBEDDED_KEY = "embedded_key"
    CRIT_UNSUPPORTED = "crit_unsupported"
    UNPROTECTED_HEADER = "unprotected_header"

    # signatures and signers
    SIGNATURE_INVALID = "signature_invalid"
    COSIGNATURE_MISSING = "cosignature_missing"
    SIGNER_UNEXPECTED = "signer_unexpected"
    KEY_NOT_VALID = "key_not_valid"
    KEY_COMPROMISED = "key_compromised"
    KEY_USE_NOT_ALLOWED = "key_use_not_allowed"

    # payload and validity window
    PAYLOAD_INVALID = "payload_invalid"
    PERMIT_NOT_YET_VALID = "permit_not_yet_valid"
    PERMIT_EXPIRED = "permit_expired"

    # status / revocation list
    STATUS_LIST_MISSING = "status_list_missing"
    STATUS_LIST_STALE = "status_list_stale"
    STATUS_LIST_INVALID = "status_list_invalid"
    STATUS_LIST_ROLLBACK = "status_list_rollback"
    PERMIT_UNKNOWN = "permit_unknown"
    PERMIT_REVOKED = "permit_revoked"
    PERMIT_SUPERSEDED = "permit_superseded"
    PERMIT_HASH_MISMATCH = "permit_hash_mismatch"

    # data holder and requester
    HOLDER_NOT_NAMED = "holder_not_named"
    REQUEST_MALFORMED = "request_malformed"
    REQUEST_SIGNATURE_INVALID = "request_signature_invalid"
    REQUESTER_NOT_AUTHORISED = "requester_not_authorised"
    REQUEST_NOT_FOR_HOLDER = "request_not_for_holder"
    REQUEST_NOT_FOR_PERMIT = "request_not_for_permit"
    REQUEST_EXPIRED = "request_expired"
    REQUEST_NOT_YET_VALID = "request_not_yet_valid"
    REQUEST_REPLAYED = "request_replayed"
    REQUEST_MISMATCH = "request_mismatch"

    # operation and parameters
    OPERATION_NOT_ALLOWED = "operation_not_allowed"
    OUTPUT_NOT_ALLOWED = "output_not_allowed"
    STRATEGY_NOT_ALLOWED = "strategy_not_allowed"
    PARAMETER_OUT_OF_BOUNDS = "parameter_out_of_bounds"
    TOO_FEW_ROWS = "too_few_rows"
    ROUNDS_EXCEEDED = "rounds_exceeded"
    SPEC_HASH_MISMATCH = "spec_hash_mismatch"

    # the guard itself
    AUDIT_UNAVAILABLE = "audit_unavailable"
    INTERNAL_ERROR = "internal_error"


__all__ = ["ReasonCode"]
