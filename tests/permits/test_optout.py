from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from permits.audit import MemorySink
from permits.errors import OptOutError
from permits.model import Permit
from permits.optout import (
    DEFAULT_POLICY_URI,
    ConsentOptOutRegistry,
    CountingOptOut,
    NoOptOut,
    OptOutPolicy,
    OptOutRegistry,
    PseudonymOptOutRegistry,
    registry_for_permit,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def consent(
    patient: str | None, kind: str = "deny", when: str = "2025-01-01T00:00:00Z", **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "dateTime": when,
        "policy": [{"uri": DEFAULT_POLICY_URI}],
        "provision": {"type": kind},
    }
    if patient is not None:
        resource["patient"] = {"reference": patient}
    resource.update(extra)
    return resource


def test_consents_latest_decides_and_deny_wins_ties() -> None:
    resources = [
        consent("Patient/p1"),
        consent("Patient/p2"),
        consent("Patient/p2", "permit", when="2025-06-01T00:00:00Z"),  # opted back in later
        consent("Patient/p3", "permit", when="2025-01-01T00:00:00Z"),
        consent("Patient/p3", "deny", when="2025-01-01T00:00:00Z"),  # tie: deny wins
        consent("https://fhir.example/Patient/p4/_history/3"),
        consent("Patient/p5", status="inactive"),
        consent(
            "Patient/p6", provision={"type": "deny", "period": {"end": "2025-12-31"}}
        ),  # expired
        {"resourceType": "Patient", "id": "p7"},
    ]
    registry = ConsentOptOutRegistry.from_resources(resources, now=NOW)
    assert isinstance(registry, OptOutRegistry)
    assert {k for k in ["p1", "p2", "p3", "p4", "p5", "p6", "p7"] if registry.is_opted_out(k)} == {
        "p1",
        "p3",
        "p4",
    }
    assert registry.stats.consents == 8 and registry.stats.opted_out == 3


def test_policy_selects_relevant_consents() -> None:
    treatment = consent("Patient/p1", scope={"coding": [{"code": "treatment"}]}, policy=[])
    assert not ConsentOptOutRegistry.from_resources([treatment], now=NOW).is_opted_out("p1")
    policy = OptOutPolicy(policy_uris=frozenset({"urn:x"}), scope_codes=frozenset({"treatment"}))
    assert ConsentOptOutRegistry.from_resources([treatment], policy, now=NOW).is_opted_out("p1")
    rule = consent(
        "Patient/p2", policy=[], scope={}, policyRule={"coding": [{"system": DEFAULT_POLICY_URI}]}
    )
    assert ConsentOptOutRegistry.from_resources([rule], now=NOW).is_opted_out("p2")


def test_bundle_input() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": consent("Patient/b1")}],
    }
    assert ConsentOptOutRegistry.from_resources([bundle], now=NOW).is_opted_out("b1")


def test_unresolvable_opt_out_fails_closed() -> None:
    with pytest.raises(OptOutError) as info:
        ConsentOptOutRegistry.from_resources([consent(None)], now=NOW)
    assert info.value.code == "OPTOUT_ERROR"
    with pytest.raises(OptOutError):
        ConsentOptOutRegistry.from_resources([consent("urn:uuid:1234")], now=NOW)
    lax = ConsentOptOutRegistry.from_resources([consent(None)], OptOutPolicy(strict=False), now=NOW)
    assert lax.stats.unresolved == 1


def test_pseudonym_list(tmp_path: Path) -> None:
    path = tmp_path / "optout.txt"
    path.write_text("# opted out\nabc123\n\n def456  # comment\n")
    registry = PseudonymOptOutRegistry.from_file(path)
    assert registry.is_opted_out("abc123") and registry.is_opted_out("def456")
    assert not registry.is_opted_out("zzz") and len(registry) == 2
    with pytest.raises(OptOutError):
        PseudonymOptOutRegistry.from_file(tmp_path / "missing.txt")


def test_counting_and_audit() -> None:
    counting = CountingOptOut(PseudonymOptOutRegistry(["a", "b"]))
    kept = [k for k in ["a", "b", "c", "d", "a"] if not counting.is_opted_out(k)]
    assert kept == ["c", "d"]
    sink = MemorySink()
    counting.record(sink, {"site": "site-a", "permit": "permit-1"})
    assert sink.events[0].type == "optout.applied"
    assert sink.events[0].details == {"excluded_opt_out": 2, "patients": 4}


def test_art_71_4_exception_disables_opt_out() -> None:
    import json

    root = Path(__file__).resolve().parents[2]
    data = json.loads((root / "docs" / "examples" / "permit.example.json").read_text())
    registry = PseudonymOptOutRegistry(["a"])
    assert registry_for_permit(Permit.model_validate(data), registry) is registry
    data["opt_out"] = {"applied": False, "exception": "art71.4", "justification": "national law"}
    assert isinstance(registry_for_permit(Permit.model_validate(data), registry), NoOptOut)
