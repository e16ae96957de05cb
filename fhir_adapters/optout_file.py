"""The one reader of opt-out files, for the CLI, the node config and the Flower site.

Why one: the CLI used to read ``--opt-out`` as bare ids only, so a file of
``Patient/123`` lines or a Consent NDJSON excluded nobody, with no warning,
while the node config accepted both. An opt-out that silently excludes
nobody is the worst failure this system can have, so every entry point reads
the file here and anything it cannot read is an error naming the line.

Accepted:

* a text file, one patient per line: ``123``, ``Patient/123``,
  ``https://server/fhir/Patient/123`` (``_history`` ignored), ``# comments``
  on their own line or after an id, blank lines;
* FHIR Consent resources: ``.json`` (a Bundle or one resource),
  ``.ndjson``/``.ndjson.gz``, or a folder, read with the same reader as data
  and interpreted by the caller's Consent policy (``permits.optout``, passed
  in as ``consents`` because ``fhir_adapters`` imports nothing of ours).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fhir_adapters.errors import FhirAdapterError
from fhir_adapters.fhirpath.functions import REFERENCE_TABLE
from fhir_adapters.optout import OptOutRegistry, StaticOptOut

ConsentReader = Callable[[Iterable[dict[str, Any]]], OptOutRegistry]

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PATIENT_REF = re.compile(r"(?:.*/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/\s]+)?")
_RESOURCE_SUFFIXES = (".json", ".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")


class OptOutFileError(FhirAdapterError):
    """An opt-out file that cannot be read completely (never half-applied)."""

    code = "OPTOUT_FILE_INVALID"


def parse_opt_out_lines(lines: Iterable[str]) -> list[str]:
    """Patient keys of a text opt-out list; raises on the first line that is not one.

    The message names the line number only (the line may be personal data).
    """
    keys: list[str] = []
    for lineno, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip().lstrip("\ufeff")
        if not text:
            continue
        if _FHIR_ID.fullmatch(text):
            keys.append(text)
            continue
        m = _PATIENT_REF.fullmatch(text)
        if m is not None:
            keys.append(m.group(1))
            continue
        raise OptOutFileError(
            f"opt-out list line {lineno} is not a patient id, Patient/<id> reference or comment"
        )
    return keys


def _is_resource_file(path: Path) -> bool:
    if path.is_dir() or path.name.lower().endswith(_RESOURCE_SUFFIXES):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as exc:
        raise OptOutFileError(f"cannot read opt-out file: {exc.strerror}") from exc
    return head.startswith(b"{")


def read_opt_out(path: str | Path, consents: ConsentReader | None = None) -> OptOutRegistry:
    """The registry a file describes (ids or Consent resources); errors never half-apply it."""
    p = Path(path)
    if not p.exists():
        raise OptOutFileError("opt-out file not found")
    if _is_resource_file(p):
        return _read_consents(p, consents)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OptOutFileError(f"cannot read opt-out file: {type(exc).__name__}") from exc
    return StaticOptOut(parse_opt_out_lines(text.splitlines()))


def _resolved_patient(consent: dict[str, Any]) -> dict[str, Any]:
    """A Consent whose ``urn:`` patient reference is given as ``Patient/<id>`` (a copy).

    Consents read from a transaction Bundle name the patient by ``fullUrl``; the
    policy reader in ``permits`` knows only ``Patient/<id>``, so the Bundle's
    table (kept with each entry by the reader) resolves it here.
    """
    table = consent.get(REFERENCE_TABLE)
    if not table:
        return consent
    out = dict(consent)
    for key in ("patient", "subject"):
        ref = consent.get(key)
        if isinstance(ref, dict) and ref.get("reference") in table:
            out[key] = {**ref, "reference": table[ref["reference"]]}
    return out


def _read_consents(path: Path, consents: ConsentReader | None) -> OptOutRegistry:
    if consents is None:
        raise OptOutFileError("this opt-out file holds FHIR resources but no Consent policy is set")
    from fhir_adapters.stream import open_stream

    stream = open_stream(path)
    others = 0
    kept: list[dict[str, Any]] = []
    for resource in stream:
        rtype = resource.get("resourceType")
        if rtype == "Consent":
            kept.append(_resolved_patient(resource))
        elif rtype != "Patient":  # the Patients a Consent bundle names are expected
            others += 1
    problems = stream.report.problems
    if problems or others:
        raise OptOutFileError(
            f"opt-out file: {problems} unreadable item(s) and {others} resource(s) that are "
            "not Consent; fix the file (an opt-out is never applied in part)"
        )
    return consents(kept)
