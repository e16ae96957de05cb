"""FHIR Bundle sources: transaction, batch, collection, searchset, document.

Transaction bundles (what Synthea writes) name their entries ``urn:uuid:...``
and reference each other by those URNs; after a server would have stored
them they are ``Type/id``. Views and features work on ``Type/id`` keys
(``getReferenceKey``), so each entry resource carries the bundle's
``{fullUrl: "Type/id"}`` table for its ``urn:`` references (one shared dict
per bundle, under :data:`REFERENCE_TABLE`) and ``getReferenceKey()`` resolves
through it. The ``reference`` text is never rewritten: a column showing
``subject.reference`` shows what the source wrote. A URN that points at no
entry is a dangling reference: counted.

Every place a Bundle enters (files, folders, Bundles passed in memory to
:class:`~fhir_adapters.stream.ResourceStream` or to a view) goes through
:func:`iter_bundle`, so the rules are the same everywhere.

A Bundle is one JSON document, so memory is bounded by the largest bundle,
not by the whole source; folders of bundles are streamed file by file.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from fhir_adapters.errors import SourceError
from fhir_adapters.fhirpath.functions import REFERENCE_TABLE
from fhir_adapters.position import ReadPosition
from fhir_adapters.quality import (
    DANGLING_REFERENCE,
    INVALID_BUNDLE,
    INVALID_JSON,
    NOT_AN_OBJECT,
    TRUNCATED_LINE,
    QualityReport,
)

BUNDLE_TYPES = frozenset(
    {
        "transaction",
        "batch",
        "collection",
        "searchset",
        "document",
        "message",
        "history",
        "transaction-response",
        "batch-response",
        "subscription-notification",
    }
)

_URN_PREFIXES = ("urn:uuid:", "urn:oid:")


def _entry_key(full_url: str, resource: dict[str, Any]) -> str | None:
    """``Type/id`` for an entry; assigns the URN's id when the resource has none."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return None
    rid = resource.get("id")
    if not isinstance(rid, str) or not rid:
        if full_url.startswith(_URN_PREFIXES):
            rid = full_url.split(":", 2)[2]
            resource["id"] = rid
        else:
            tail = full_url.rstrip("/").rsplit("/", 2)
            if len(tail) == 3 and tail[1] == rtype:
                rid = tail[2]
                resource["id"] = rid
            else:
                return None
    return f"{rtype}/{rid}"


def is_bundle(obj: Any) -> bool:
    """A Bundle of entries (as opposed to some other resource)."""
    return type(obj) is dict and obj.get("resourceType") == "Bundle"


def reference_map(bundle: dict[str, Any]) -> dict[str, str]:
    """``fullUrl -> Type/id`` for every entry that has both."""
    out: dict[str, str] = {}
    for entry in bundle.get("entry") or ():
        if not isinstance(entry, dict):
            continue
        full_url = entry.get("fullUrl")
        resource = entry.get("resource")
        if isinstance(full_url, str) and isinstance(resource, dict):
            key = _entry_key(full_url, resource)
            if key is not None:
                out[full_url] = key
    return out


_URN_REF = re.compile(rb'"reference":"(urn:(?:uuid|oid):[^"]*)"')


class _Rewriter:
    """Finds ``urn:`` references that resolve to nothing (the resource is not changed)."""

    __slots__ = ("dangling", "mapping")

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping
        self.dangling: list[str] = []

    def check(self, node: dict[str, Any], path: str) -> None:
        """``walk`` only when needed: orjson + a regex find every urn reference at C speed."""
        self.dangling.clear()
        mapping = self.mapping
        for m in _URN_REF.finditer(orjson.dumps(node)):
            if m.group(1).decode() not in mapping:
                self.walk(node, path)  # a dangling one: walk for the element paths
                return

    def walk(self, node: Any, path: str) -> None:
        if type(node) is dict:
            ref = node.get("reference")
            if type(ref) is str and ref.startswith(_URN_PREFIXES) and ref not in self.mapping:
                self.dangling.append(f"{path}.reference")
            for key, value in node.items():
                if type(value) is dict or type(value) is list:
                    self.walk(value, f"{path}.{key}")
        elif type(node) is list:
            for item in node:
                if type(item) is dict or type(item) is list:
                    self.walk(item, path)


def iter_bundle(
    bundle: dict[str, Any],
    report: QualityReport,
    source: str = "<bundle>",
    position: ReadPosition | None = None,
) -> Iterator[dict[str, Any]]:
    """The entries' resources, each with the bundle's ``urn:`` reference table.

    OperationOutcome entries of a searchset (``search.mode = outcome``) are
    server messages, not data, and are skipped. ``position.entry`` is the
    index of the entry being yielded (for quarantine records).
    """
    btype = bundle.get("type")
    entries = bundle.get("entry")
    if btype not in BUNDLE_TYPES or (entries is not None and not isinstance(entries, list)):
        report.add(
            INVALID_BUNDLE,
            resource_type="Bundle",
            resource_id=bundle.get("id") if isinstance(bundle.get("id"), str) else None,
            path="Bundle.type" if btype not in BUNDLE_TYPES else "Bundle.entry",
            message="unsupported bundle type"
            if btype not in BUNDLE_TYPES
            else "entry is not a list",
            source=source,
        )
        return
    mapping = reference_map(bundle)
    urns = {k: v for k, v in mapping.items() if k.startswith(_URN_PREFIXES)}
    rewriter = _Rewriter(mapping)
    for index, entry in enumerate(entries or ()):
        if position is not None:
            position.entry = index
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            if isinstance(entry, dict) and "request" in entry and entry.get("resource") is None:
                continue  # DELETE / GET requests carry no resource
            report.add(
                NOT_AN_OBJECT,
                path=f"Bundle.entry[{index}]",
                message="entry without resource",
                source=source,
                entry=index,
            )
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        rtype = resource.get("resourceType")
        rtype_s = rtype if isinstance(rtype, str) else "Resource"
        if mapping:
            rewriter.check(resource, rtype_s)
            for path in rewriter.dangling:
                report.add(
                    DANGLING_REFERENCE,
                    resource_type=rtype_s,
                    resource_id=resource.get("id") if isinstance(resource.get("id"), str) else None,
                    path=path,
                    message="reference to a fullUrl that is not in the bundle",
                    source=source,
                    entry=index,
                )
        else:
            _count_urn_dangling(resource, rtype_s, report, source)
        if urns:
            resource[REFERENCE_TABLE] = urns
        yield resource
    if position is not None:
        position.entry = None


def _count_urn_dangling(
    resource: dict[str, Any], rtype: str, report: QualityReport, source: str
) -> None:
    rewriter = _Rewriter({})
    rewriter.check(resource, rtype)
    for path in rewriter.dangling:
        report.add(
            DANGLING_REFERENCE,
            resource_type=rtype,
            resource_id=resource.get("id") if isinstance(resource.get("id"), str) else None,
            path=path,
            message="urn reference outside any bundle",
            source=source,
        )


def load_json_file(path: Path, report: QualityReport) -> dict[str, Any] | None:
    """One JSON document (``.json`` or ``.json.gz``, BOM tolerated); a broken file is counted."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile):
            raise SourceError(f"cannot read {path.name}: {exc.strerror}") from exc
        report.add(TRUNCATED_LINE, message="gzip file cut off", source=path.name)
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.strip()
        kind = TRUNCATED_LINE if text.startswith(b"{") and not text.endswith(b"}") else INVALID_JSON
        report.add(kind, message="file is not valid JSON", source=path.name)
        return None
    if not isinstance(obj, dict):
        report.add(NOT_AN_OBJECT, message="file is not a JSON object", source=path.name)
        return None
    return obj


def iter_json_file(
    path: str | Path, report: QualityReport, position: ReadPosition | None = None
) -> Iterator[dict[str, Any]]:
    """A ``.json`` file holding a Bundle (its entries) or a single resource."""
    file = Path(path)
    if position is not None:
        position.at(file.name)
    obj = load_json_file(file, report)
    if obj is None:
        return
    if obj.get("resourceType") == "Bundle":
        yield from iter_bundle(obj, report, source=file.name, position=position)
    elif "resourceType" not in obj and "transactionTime" in obj and "output" in obj:
        # a Bulk Data manifest kept next to its output files: metadata, not a resource
        report.files_skipped["bulk_manifest"] += 1
    else:
        yield obj
