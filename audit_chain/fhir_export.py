"""Export log entries as FHIR R4 AuditEvent resources for hospital audit repositories.

Each entry becomes one AuditEvent, built as JSON and validated with
fhir.resources (its R4B model: AuditEvent is unchanged between R4 and R4B):

* ``type``: the event type (``permit.issued`` ...) in this project's code system;
* ``action`` / ``outcome`` / ``outcomeDesc``: derived from the type and ``reason``;
* ``recorded``: the event's signed UTC time;
* ``agent``: the signer (organisation id, key id as ``altId``), ``requestor = true``;
* ``source``: the log (origin id);
* ``entity``: one per subject id (permit jti, job, model, ...) and one per hash
  (permit/spec/model hash, checkpoint root), plus the counts and codes as
  ``entity.detail`` of the record entity;
* ``extension``: the compact JWS itself, its log index and leaf hash, so the
  receiving repository can re-verify the signature and request proofs.

Only identifiers, codes, hashes and counts are exported: the v1 schema admits nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent

from audit_chain.checkpoint import root_text
from audit_chain.events import Event, parse_event, verify_event
from audit_chain.log import AuditLog, Entry
from audit_chain.schema import DETAIL_KINDS, Kind
from audit_chain.signers import TrustStore

BASE = "https://ehds-gateway.eu/fhir"
TYPE_SYSTEM = f"{BASE}/CodeSystem/audit-event-type"
ORG_SYSTEM = f"{BASE}/NamingSystem/organisation"
KID_SYSTEM = "urn:ietf:rfc:7638"
SUBJECT_SYSTEM = f"{BASE}/NamingSystem/"  # + subject key (permit, job, model, ...)
HASH_SYSTEM = f"{BASE}/NamingSystem/hash/"  # + detail key (permit_hash, model_hash, ...)
EXT_JWS = f"{BASE}/StructureDefinition/audit-jws"
EXT_INDEX = f"{BASE}/StructureDefinition/audit-log-index"
EXT_LEAF = f"{BASE}/StructureDefinition/audit-leaf-hash"
EXT_LOG = f"{BASE}/StructureDefinition/audit-log-id"
ENTITY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-entity-type"

_ACTIONS = {
    "permit.applied": "C",
    "permit.approved": "E",
    "permit.refused": "E",
    "permit.issued": "C",
    "permit.amended": "U",
    "permit.revoked": "U",
    "statuslist.published": "C",
    "access.allowed": "E",
    "access.denied": "E",
    "data.extracted": "R",
    "optout.applied": "E",
    "training.started": "E",
    "training.round": "E",
    "training.site_failed": "E",
    "model.released": "C",
}
_OUTCOMES = {"access.denied": "4", "permit.refused": "4", "training.site_failed": "8"}


def _entity(system: str, value: str, *, type_code: str = "2") -> dict[str, Any]:
    return {
        "what": {"identifier": {"system": system, "value": value}},
        "type": {"system": ENTITY_TYPE_SYSTEM, "code": type_code},
    }


def audit_event_json(entry: Entry, event: Event, log_id: str) -> dict[str, Any]:
    """The AuditEvent JSON for one entry (validated with fhir.resources)."""
    details = dict(event.details)
    entities = [
        _entity(SUBJECT_SYSTEM + key, value) for key, value in sorted(event.subject.items())
    ]
    entities += [
        _entity(HASH_SYSTEM + key, str(value))
        for key, value in sorted(details.items())
        if Kind.HASH in DETAIL_KINDS[key]
    ]
    record_details = [
        {"type": key, "valueString": str(value)}
        for key, value in sorted(details.items())
        if Kind.HASH not in DETAIL_KINDS[key]
    ]
    record: dict[str, Any] = {
        "what": {
            "identifier": {
                "system": f"{BASE}/NamingSystem/audit-entry",
                "value": f"{log_id}/{entry.index}",
            }
        },
        "type": {"system": ENTITY_TYPE_SYSTEM, "code": "4"},  # "Other": the log record itself
    }
    if record_details:
        record["detail"] = record_details
    entities.append(record)
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"ehds-{entry.index}-{entry.leaf_hash.hex()[:16]}",
        "extension": [
            {"url": EXT_JWS, "valueString": entry.token},
            {"url": EXT_INDEX, "valueInteger": entry.index},
            {"url": EXT_LEAF, "valueString": root_text(entry.leaf_hash)},
            {"url": EXT_LOG, "valueString": log_id},
        ],
        "type": {"system": TYPE_SYSTEM, "code": event.type},
        "action": _ACTIONS[event.type],
        "recorded": event.time,
        "outcome": _OUTCOMES.get(event.type, "0"),
        "agent": [
            {
                "who": {"identifier": {"system": ORG_SYSTEM, "value": event.org}},
                "altId": event.kid,
                "requestor": True,
            }
        ],
        "source": {
            "site": log_id,
            "observer": {"identifier": {"system": ORG_SYSTEM, "value": log_id}},
        },
        "entity": entities,
    }
    if "reason" in details:
        resource["outcomeDesc"] = str(details["reason"])
    AuditEvent.model_validate(resource)  # raises pydantic.ValidationError if we ever drift
    return resource


def export_audit_events(
    log: AuditLog, *, start: int = 0, end: int | None = None, trust: TrustStore | None = None
) -> Iterator[dict[str, Any]]:
    """AuditEvent JSON for entries ``[start, end)``; with ``trust`` each signature is verified first."""
    for entry in log.entries(start, end):
        event = (
            verify_event(entry.token, trust).event
            if trust is not None
            else parse_event(entry.token)
        )
        yield audit_event_json(entry, event, log.log_id)


__all__ = ["EXT_JWS", "audit_event_json", "export_audit_events"]
