"""EHDS data permits (Regulation (EU) 2025/327, secondary use).

Owns the permit model, HDAB-side issuance (apply, decide, issue, amend, revoke),
JWS signing (single and multi-HDAB), verification against a trust list, the
fail-closed ``PermitGuard`` at data holders, revocation/status lists and opt-out.

May import: nothing else of ours. Decisions are written through an ``AuditSink``
protocol declared here; ``audit_chain`` provides a matching implementation.
"""

from permits.audit import AuditSink, MemorySink
from permits.errors import PermitError, VerificationError
from permits.guard import AccessRequest, Decision, PermitGuard, check_bounds
from permits.model import Permit, PermitApplication, permit_json_schema
from permits.optout import (
    ConsentOptOutRegistry,
    CountingOptOut,
    OptOutPolicy,
    OptOutRegistry,
    PseudonymOptOutRegistry,
    registry_for_permit,
)
from permits.reasons import ReasonCode
from permits.request import AccessParams, make_request
from permits.signing import cosign_permit, sign_permit
from permits.statuslist import StatusListStore
from permits.trust_list import TrustedKey, TrustList, trusted_key
from permits.verify import PermitVerifier, VerifiedPermit
from trust import generate_jwk as generate_key  # kept in the public API; lives in trust
from trust import load_jwk, thumbprint

__all__ = [
    "AccessParams",
    "AccessRequest",
    "AuditSink",
    "ConsentOptOutRegistry",
    "CountingOptOut",
    "Decision",
    "MemorySink",
    "OptOutPolicy",
    "OptOutRegistry",
    "Permit",
    "PermitApplication",
    "PermitError",
    "PermitGuard",
    "PermitVerifier",
    "PseudonymOptOutRegistry",
    "ReasonCode",
    "StatusListStore",
    "TrustList",
    "TrustedKey",
    "VerificationError",
    "VerifiedPermit",
    "check_bounds",
    "cosign_permit",
    "generate_key",
    "load_jwk",
    "make_request",
    "permit_json_schema",
    "registry_for_permit",
    "sign_permit",
    "thumbprint",
    "trusted_key",
]
