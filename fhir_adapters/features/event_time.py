"""When an event happened, if the view's time column is empty.

Why: a Condition known only by ``onsetPeriod`` or ``recordedDate`` has no
``onset.ofType(dateTime)``; without a fallback it silently vanished from every
windowed feature while still counting for an unbounded label. Here each
resource type lists the elements that say *when* it happened, in order of
preference (the start of a period, then the date it was recorded). Rows that
take their time from here are counted (``time_fallback_rows``); rows with no
time at all are left out of bounded windows and counted as
``no_event_time`` in the quality report, never dropped silently.

``onsetAge`` alone gives no date without the birth date, so it is not used
(such rows fall through to ``recordedDate`` or are counted as undated).
"""

from __future__ import annotations

from typing import Any

_FALLBACKS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "Condition": (("onsetPeriod", "start"), ("recordedDate", None)),
    "AllergyIntolerance": (("onsetPeriod", "start"), ("recordedDate", None)),
    "Observation": (("effectivePeriod", "start"), ("effectiveInstant", None), ("issued", None)),
    "DiagnosticReport": (("effectivePeriod", "start"), ("issued", None)),
    "Procedure": (
        ("performedPeriod", "start"),
        ("occurrencePeriod", "start"),
        ("recorded", None),
    ),
    "Encounter": (("period", "start"), ("actualPeriod", "start")),
    "MedicationRequest": (("authoredOn", None),),
    "MedicationStatement": (("effectivePeriod", "start"), ("dateAsserted", None)),
    "MedicationAdministration": (("effectivePeriod", "start"), ("occurencePeriod", "start")),
    "Immunization": (("recorded", None),),
}


def fallback_time(resource: dict[str, Any]) -> str | None:
    """The first date this resource type records for itself, or None."""
    for key, sub in _FALLBACKS.get(resource.get("resourceType"), ()):  # type: ignore[arg-type]
        v = resource.get(key)
        if sub is not None:
            v = v.get(sub) if type(v) is dict else None
        if type(v) is str and v:
            return v
    return None
