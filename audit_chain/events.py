"""Signed events: a schema-checked v2 payload in a compact JWS signed by its actor.

The log's leaves are the exact ASCII bytes of these tokens. Payload JSON is
canonical (RFC 8785, :func:`trust.canonical_json`) so the same event always has the same
bytes, and the payload's ``actor`` must name the key that signed it.

    token = sign_event(signer, "permit.issued", subject={"permit": jti},
                       details={"permit_hash": "sha256:...", "version": 1},
                       origin="hdab-fi", index=41)       # the log and position it is for
    event = verify_event(token, trust_store)     # VerifiedEvent, or AuditError
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from audit_chain.errors import AuditActorError, AuditSchemaError
from audit_chain.schema import SCHEMA_VERSION, check_payload
from audit_chain.signers import (
    EventSigner,
    Token,
    TrustedKey,
    TrustStore,
    parse_token,
    verify_token,
)
from trust import TrustError, canonical_json

EVENT_TYP = "ehds-audit-event+jws"
DRAFT_ORIGIN = "draft"
"""Origin of an event not yet placed in a log; no log has this id."""


def utc_now() -> str:
    """Current UTC time, RFC 3339 with milliseconds and ``Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Event:
    """A validated v2 event payload (``origin``/``index``: the log position it was signed for)."""

    type: str
    org: str
    kid: str
    subject: Mapping[str, str]
    time: str
    details: Mapping[str, object]
    origin: str = DRAFT_ORIGIN
    index: int = 0

    def placed(self, origin: str, index: int) -> Event:
        """The same event for position ``index`` of log ``origin``."""
        return replace(self, origin=origin, index=index)

    def to_payload(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "type": self.type,
            "actor": {"org": self.org, "kid": self.kid},
            "log": {"origin": self.origin, "index": self.index},
            "subject": dict(self.subject),
            "time": self.time,
            "details": dict(self.details),
        }

    def payload_bytes(self) -> bytes:
        try:
            return canonical_json(self.to_payload())
        except TrustError as exc:
            raise AuditSchemaError(f"event has no canonical form: {exc}") from None

    @classmethod
    def from_payload(cls, payload: object) -> Event:
        p = check_payload(payload)
        actor: dict[str, str] = p["actor"]  # type: ignore[assignment]
        place: dict[str, Any] = p["log"]  # type: ignore[assignment]
        return cls(
            type=str(p["type"]),
            org=actor["org"],
            kid=actor["kid"],
            subject=p["subject"],  # type: ignore[arg-type]
            time=str(p["time"]),
            details=p["details"],  # type: ignore[arg-type]
            origin=str(place["origin"]),
            index=int(place["index"]),
        )


def build_event(
    type: str,
    *,
    org: str,
    kid: str,
    subject: Mapping[str, str],
    details: Mapping[str, object],
    time: str | None = None,
    origin: str = DRAFT_ORIGIN,
    index: int = 0,
) -> Event:
    """Build and schema-check an event (AuditSchemaError on anything outside v2).

    Without ``origin``/``index`` it is a draft: a log places it (``Event.placed``)
    under its append lock, when the index is known, and signs it there.
    """
    return Event.from_payload(
        {
            "v": SCHEMA_VERSION,
            "type": type,
            "actor": {"org": org, "kid": kid},
            "log": {"origin": origin, "index": index},
            "subject": subject,
            "time": time or utc_now(),
            "details": details,
        }
    )


def sign_event(
    signer: EventSigner,
    type: str,
    *,
    subject: Mapping[str, str],
    details: Mapping[str, object],
    origin: str,
    index: int,
    time: str | None = None,
) -> str:
    """Build, check and sign an event as ``signer``'s organisation for position ``index`` of ``origin``."""
    event = build_event(
        type,
        org=signer.org,
        kid=signer.kid,
        subject=subject,
        details=details,
        time=time,
        origin=origin,
        index=index,
    )
    return sign_built(signer, event)


def sign_built(signer: EventSigner, event: Event) -> str:
    """Sign an already checked event (its actor must be ``signer``)."""
    return signer.sign(event.payload_bytes(), EVENT_TYP)


def _payload_event(parsed: Token) -> Event:
    try:
        payload = orjson.loads(parsed.payload)
    except orjson.JSONDecodeError as exc:
        raise AuditSchemaError("event payload is not JSON") from exc
    event = Event.from_payload(payload)
    if event.payload_bytes() != parsed.payload:
        # duplicate keys, whitespace or key order would let two parsers read one signed
        # event differently, and give one event several byte forms (several leaves)
        raise AuditSchemaError("event payload is not canonical JSON (RFC 8785)")
    if event.kid != parsed.kid:
        raise AuditActorError("payload actor.kid is not the key that signed the event")
    return event


def parse_event(token: str | bytes) -> Event:
    """Shape and schema check without signature verification (what ``append`` enforces)."""
    return _payload_event(parse_token(token, EVENT_TYP))


@dataclass(frozen=True)
class VerifiedEvent:
    token: str
    event: Event
    key: TrustedKey


def verify_event(token: str | bytes, trust: TrustStore) -> VerifiedEvent:
    """Verify signature (pinned alg), schema and that the actor owns the signing key."""
    parsed, key = verify_token(token, trust, EVENT_TYP)
    event = _payload_event(parsed)
    if event.org != key.org:
        raise AuditActorError(f"payload actor.org is not the owner of key {key.kid}")
    return VerifiedEvent(parsed.token, event, key)


__all__ = [
    "DRAFT_ORIGIN",
    "EVENT_TYP",
    "Event",
    "VerifiedEvent",
    "build_event",
    "parse_event",
    "sign_built",
    "sign_event",
    "utc_now",
    "verify_event",
]
