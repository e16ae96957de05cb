"""The v1 event payload schema: exactly which fields, types and values may enter the log.

Why so strict: the log is append-only and replicated to HDABs and hospitals, so
anything written there can never be taken back. Payloads therefore carry only
identifiers (permit jti, job id, ...), codes, hashes and counts, every key is
known per event type, and anything else is refused with ``AuditSchemaError``.
There is no free-text field, so there is nowhere personal data could go.

Payload shape (DEVELOPERS.md)::

    {"v": 2, "type": ..., "actor": {"org": ..., "kid": ...},
     "log": {"origin": ..., "index": ...},
     "subject": {...}, "time": "...Z", "details": {...}}

``log`` (new in v2) names the log and the position the event was signed for:
an event copied to another index or into another log no longer verifies there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from enum import Enum

from audit_chain.errors import AuditSchemaError
from trust.identifiers import CODE, HASH, IDENTIFIER, KID, is_identifier, is_kid

SCHEMA_VERSION = 2

TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
"""UTC instant, RFC 3339 with a literal ``Z``."""

MAX_COUNT = 2**53 - 1  # stays exact in every JSON reader

PAYLOAD_KEYS = frozenset({"v", "type", "actor", "log", "subject", "time", "details"})
ACTOR_KEYS = frozenset({"org", "kid"})
LOG_KEYS = frozenset({"origin", "index"})
SUBJECT_KEYS = frozenset(
    {"permit", "job", "application", "model", "site", "node", "request", "log"}
)


class Kind(Enum):
    """What a detail value may be."""

    HASH = "hash"  # "sha256:<64 lowercase hex>"
    CODE = "code"  # ^[a-z0-9_.:-]{1,64}$
    COUNT = "count"  # int, 0 <= x < 2**53 (never a bool)
    REF = "ref"  # an identifier, like subject values (a superseded permit's jti)


DETAIL_KINDS: dict[str, tuple[Kind, ...]] = {
    "application_hash": (Kind.HASH,),
    "permit_hash": (Kind.HASH,),
    "spec_hash": (Kind.HASH,),
    "model_hash": (Kind.HASH,),
    "checkpoint_root": (Kind.HASH,),
    "app_digest": (Kind.HASH,),
    "purpose": (Kind.CODE,),
    "reason": (Kind.CODE,),
    "operation": (Kind.CODE,),
    "strategy": (Kind.CODE,),
    "version": (Kind.COUNT, Kind.CODE),
    "signatures": (Kind.COUNT,),
    "supersedes": (Kind.REF,),
    "status_list_version": (Kind.COUNT,),
    "revoked_count": (Kind.COUNT,),
    "rounds_used": (Kind.COUNT,),
    "patients": (Kind.COUNT,),
    "rows": (Kind.COUNT,),
    "features": (Kind.COUNT,),
    "excluded_opt_out": (Kind.COUNT,),
    "quarantined": (Kind.COUNT,),
    "rounds": (Kind.COUNT,),
    "sites": (Kind.COUNT,),
    "round": (Kind.COUNT,),
    "bytes_sent": (Kind.COUNT,),
    "trees": (Kind.COUNT,),
    "checkpoint_size": (Kind.COUNT,),
    "known_size": (Kind.COUNT,),
}

EVENT_SCHEMAS: dict[str, frozenset[str]] = {
    "permit.applied": frozenset({"application_hash", "purpose"}),
    "witness.refused": frozenset({"reason", "checkpoint_size", "known_size"}),
    "permit.approved": frozenset({"reason", "application_hash"}),
    "permit.refused": frozenset({"reason", "application_hash"}),
    "permit.issued": frozenset({"permit_hash", "version", "signatures", "supersedes"}),
    "permit.amended": frozenset({"permit_hash", "version", "signatures", "supersedes"}),
    "permit.revoked": frozenset({"reason", "status_list_version"}),
    "statuslist.published": frozenset({"status_list_version", "revoked_count"}),
    "access.allowed": frozenset({"reason", "operation", "rounds_used", "app_digest"}),
    "access.denied": frozenset({"reason", "operation", "rounds_used", "app_digest"}),
    "data.extracted": frozenset(
        {"spec_hash", "patients", "rows", "features", "excluded_opt_out", "quarantined"}
    ),
    "optout.applied": frozenset({"excluded_opt_out", "patients"}),
    "training.started": frozenset({"spec_hash", "rounds", "sites", "strategy"}),
    "training.round": frozenset({"round", "model_hash", "rows", "sites", "bytes_sent", "trees"}),
    "training.site_failed": frozenset({"round", "reason"}),
    "model.released": frozenset(
        {"model_hash", "rounds", "sites", "checkpoint_size", "checkpoint_root"}
    ),
}
"""Event type -> the detail keys it may carry (all optional), as in DEVELOPERS.md."""


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _fits(kind: Kind, value: object) -> bool:
    if kind is Kind.COUNT:
        return type(value) is int and 0 <= value <= MAX_COUNT
    if kind is Kind.HASH:
        return _matches(HASH, value)
    if kind is Kind.CODE:
        return _matches(CODE, value)
    return _matches(IDENTIFIER, value)


def check_type(event_type: object) -> str:
    if not isinstance(event_type, str) or event_type not in EVENT_SCHEMAS:
        raise AuditSchemaError("unknown event type (see audit_chain.schema.EVENT_SCHEMAS)")
    return event_type


def check_subject(subject: object) -> dict[str, str]:
    """Subject ids: known keys, identifier values. Returns a plain copy."""
    if not isinstance(subject, Mapping):
        raise AuditSchemaError("subject must be an object of identifiers")
    out: dict[str, str] = {}
    for key, value in subject.items():
        if key not in SUBJECT_KEYS:
            raise AuditSchemaError(
                f"subject key {key!r} not allowed (allowed: {sorted(SUBJECT_KEYS)})"
                if isinstance(key, str) and CODE.fullmatch(key)
                else "subject key not allowed"
            )
        if not is_identifier(value):
            raise AuditSchemaError(f"subject.{key} must match {IDENTIFIER.pattern}")
        out[key] = value
    return out


def check_details(event_type: str, details: object) -> dict[str, object]:
    """Details of one event type: known keys only, each of its kind. Returns a copy."""
    allowed = EVENT_SCHEMAS[check_type(event_type)]
    if not isinstance(details, Mapping):
        raise AuditSchemaError("details must be an object")
    out: dict[str, object] = {}
    for key, value in details.items():
        if key not in allowed:
            shown = key if isinstance(key, str) and CODE.fullmatch(key) else "<invalid key>"
            raise AuditSchemaError(
                f"detail {shown!r} is not allowed for {event_type} (allowed: {sorted(allowed)})"
            )
        kinds = DETAIL_KINDS[key]
        if isinstance(value, float) and not math.isfinite(value):
            raise AuditSchemaError(f"detail {key!r} is not a finite number")
        if not any(_fits(kind, value) for kind in kinds):
            names = " or ".join(k.value for k in kinds)
            raise AuditSchemaError(
                f"detail {key!r} of {event_type} must be a {names} (got {type(value).__name__})"
            )
        out[key] = value
    return out


def check_time(value: object) -> str:
    if not _matches(TIME, value):
        raise AuditSchemaError("time must be an RFC 3339 UTC instant ending in 'Z'")
    try:
        datetime.fromisoformat(str(value)[:-1] + "+00:00")
    except ValueError as exc:
        raise AuditSchemaError("time is not a valid date-time") from exc
    return str(value)


def check_payload(payload: object) -> dict[str, object]:
    """Validate a whole v1 payload (as parsed JSON) and return it as a plain dict."""
    if not isinstance(payload, Mapping):
        raise AuditSchemaError("payload must be a JSON object")
    keys = set(payload)
    if keys != PAYLOAD_KEYS:
        extra = sorted(str(k) for k in keys - PAYLOAD_KEYS)
        missing = sorted(PAYLOAD_KEYS - keys)
        raise AuditSchemaError(
            f"payload fields differ from v{SCHEMA_VERSION}: {len(extra)} unknown, missing {missing}"
        )
    if type(payload["v"]) is not int or payload["v"] != SCHEMA_VERSION:
        raise AuditSchemaError(f"unsupported payload version (want {SCHEMA_VERSION})")
    event_type = check_type(payload["type"])
    actor = payload["actor"]
    if not isinstance(actor, Mapping) or set(actor) != ACTOR_KEYS:
        raise AuditSchemaError("actor must be exactly {org, kid}")
    if not is_identifier(actor["org"]):
        raise AuditSchemaError(f"actor.org must match {IDENTIFIER.pattern}")
    if not is_kid(actor["kid"]):
        raise AuditSchemaError("actor.kid must be an RFC 7638 SHA-256 thumbprint")
    place = payload["log"]
    if not isinstance(place, Mapping) or set(place) != LOG_KEYS:
        raise AuditSchemaError("log must be exactly {origin, index}")
    if not is_identifier(place["origin"]):
        raise AuditSchemaError(f"log.origin must match {IDENTIFIER.pattern}")
    index = place["index"]
    if type(index) is not int or not 0 <= index <= MAX_COUNT:
        raise AuditSchemaError("log.index must be a non-negative integer")
    return {
        "v": SCHEMA_VERSION,
        "type": event_type,
        "actor": {"org": actor["org"], "kid": actor["kid"]},
        "log": {"origin": place["origin"], "index": index},
        "subject": check_subject(payload["subject"]),
        "time": check_time(payload["time"]),
        "details": check_details(event_type, payload["details"]),
    }


__all__ = [
    "ACTOR_KEYS",
    "CODE",
    "DETAIL_KINDS",
    "EVENT_SCHEMAS",
    "HASH",
    "IDENTIFIER",
    "KID",
    "LOG_KEYS",
    "PAYLOAD_KEYS",
    "SCHEMA_VERSION",
    "SUBJECT_KEYS",
    "TIME",
    "Kind",
    "check_details",
    "check_payload",
    "check_subject",
    "check_time",
    "check_type",
    "is_identifier",
    "is_kid",
]
