"""EHDS data permits (Regulation (EU) 2025/327, secondary use).

Owns the permit model, HDAB-side issuance (apply, decide, issue, amend, revoke),
JWS signing (single and multi-HDAB), verification against a trust list, the
fail-closed ``PermitGuard`` at data holders, revocation/status lists and opt-out.

May import: nothing else of ours. Decisions are written through an ``AuditSink``
protocol declared here; ``audit_chain`` provides a matching implementation.
"""
