"""Medication codes behind references: ``MedicationRequest.medicationReference -> Medication``.

Why: a MedicationStatement or MedicationRequest may name its drug by
reference to a Medication resource (R4 ``medicationReference``, R5
``medication.reference``) instead of a code; its code column is then empty and
the row matched no feature. The Medication may come before or after the
request in the stream (Bulk exports write one file per type), so rows with
an empty code and a medication reference are kept aside during the pass
(with only what the row needs) and, once every Medication has been seen, are
routed again with the Medication's codings. A reference that resolves to
nothing is counted as a dangling reference; contained Medications
(``#med1``) are read from the resource itself.
"""

from __future__ import annotations

from typing import Any

from fhir_adapters.features.event_time import fallback_time

MEDICATION_USERS = frozenset(
    {
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
        "MedicationDispense",
    }
)

Coding = tuple[Any, Any]


def _codings(medication: dict[str, Any]) -> list[Coding]:
    code = medication.get("code")
    out: list[Coding] = []
    if type(code) is dict:
        for c in code.get("coding") or ():
            if type(c) is dict and type(c.get("code")) is str:
                out.append((c.get("system"), c["code"]))
    return out


def medication_reference(res: dict[str, Any]) -> str | None:
    """The reference text of the resource's medication (R4 or R5 shape), or None."""
    ref = res.get("medicationReference")
    if type(ref) is not dict:
        med = res.get("medication")
        ref = med.get("reference") if type(med) is dict else None
    if type(ref) is dict and type(ref.get("reference")) is str:
        return str(ref["reference"])
    return None


class MedicationCodes:
    """Medication id -> codings, and the rows waiting for them."""

    __slots__ = ("by_id", "pending", "wanted")

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted  # some events view reads a Medication* resource
        self.by_id: dict[str, list[Coding]] = {}
        # (handler, row, stub resource, reference, contained codings or None)
        self.pending: list[
            tuple[Any, tuple[Any, ...], dict[str, Any], str, list[Coding] | None]
        ] = []

    def add(self, medication: dict[str, Any]) -> None:
        mid = medication.get("id")
        if type(mid) is str:
            self.by_id[mid] = _codings(medication)

    def defer(self, handler: Any, row: tuple[Any, ...], res: dict[str, Any]) -> bool:
        """Keep a row whose code is empty because the drug is a reference; True if kept."""
        if not self.wanted or res.get("resourceType") not in MEDICATION_USERS:
            return False
        ref = medication_reference(res)
        if ref is None:
            return False
        contained: list[Coding] | None = None
        if ref.startswith("#"):
            contained = []
            for c in res.get("contained") or ():
                if type(c) is dict and c.get("id") == ref[1:]:
                    contained = _codings(c)
        ti = handler.ti
        if ti is not None and row[ti] is None:  # keep the fallback date, not the whole resource
            fallback = fallback_time(res)
            if fallback is not None:
                row = (*row[:ti], fallback, *row[ti + 1 :])
        stub = {"resourceType": res.get("resourceType"), "id": res.get("id")}
        self.pending.append((handler, row, stub, ref, contained))
        return True

    def resolve(self, route: Any, dangling: Any) -> int:
        """Route every waiting row with its Medication's codings; returns rows resolved.

        ``route(handler, rows, stub)`` is the extractor's row routine;
        ``dangling(stub)`` counts a reference that resolves to nothing.
        """
        resolved = 0
        for handler, row, stub, ref, contained in self.pending:
            codings = contained
            if codings is None:
                key = ref.split("/_history/", 1)[0].rsplit("/", 1)[-1].rsplit(":", 1)[-1]
                codings = (
                    self.by_id.get(key) if "Medication/" in ref or ref.startswith("urn:") else None
                )
            if not codings:
                dangling(stub)
                continue
            si, ci = handler.si, handler.ci
            rows = []
            for system, code in codings:
                r = list(row)
                r[si] = system
                r[ci] = code
                rows.append(tuple(r))
            route(handler, rows, stub)
            resolved += 1
        self.pending.clear()
        return resolved
