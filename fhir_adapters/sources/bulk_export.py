"""Bulk Data ``$export`` client (Bulk Data Access IG 3.0.0).

Flow: kick-off (``Prefer: respond-async``) -> ``202`` + ``Content-Location``
-> poll the status URL (honouring ``Retry-After`` and reporting
``X-Progress``, capped exponential backoff otherwise, overall deadline) ->
``200`` manifest -> download ``output``, ``error`` and ``deleted`` files
several at a time (bounded), gzip or not, line by line to disk -> ``DELETE``
the job. A manifest in pages (``allowPartialManifests``) is followed through
its ``link`` next to the end before anything counts as complete. The job's state is saved in the output directory after every step
so an interrupted client resumes from the status URL (see ``export_state``).

Files land in the Bulk Data layout: ``<Type>.<n>.ndjson`` at the top,
OperationOutcomes under ``error/``, deleted-resource Bundles under
``deleted/``; the manifest, local paths, counts and hashes in the state file
``.export-state`` (no ``.json`` suffix, so folder readers skip it).
A line that is not a FHIR resource is counted and dropped, never fatal.
Memory is bounded by one line per concurrent download; file I/O runs in
threads so the event loop (and a gateway serving requests on it) never blocks.

What is safe to repeat: status polls, downloads and the DELETE are retried;
the kick-off only on 429/503 or a transient OperationOutcome, and never after
the request may have reached the server (a second job is worse than an error).
A finished export whose manifest lists failures under ``error[]`` is
*partial*: the state says which types failed and it is never a ``_since`` base.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import yarl

from fhir_adapters.errors import (
    BulkExportError,
    BulkExportTimeout,
    FhirCapabilityError,
    FhirHttpError,
    FhirProtocolError,
)
from fhir_adapters.sources.export_state import (
    ExportState,
    FileRecord,
    load_state,
    save_state,
)
from fhir_adapters.sources.http import (
    FHIR_JSON,
    FHIR_NDJSON,
    FhirClient,
    parse_retry_after,
    read_json,
)
from fhir_adapters.sources.ndjson_lines import (
    DEFAULT_MAX_LINE,
    LineStats,
    NdjsonSplitter,
    read_resource_lines,
)
from fhir_adapters.sources.outcome import (
    is_error_outcome,
    is_operation_outcome,
    outcome_codes,
    outcome_types,
)

LEVELS = ("system", "patient", "group")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_TYPE_FILTER = re.compile(r"^[A-Z][A-Za-z]{1,63}\?\S+$")
# Poll errors worth retrying: throttling and gateway hiccups. A plain 500 with a
# non-transient OperationOutcome means the job failed (IG 3.0.0, "Error status").
_POLL_RETRY = frozenset({408, 429, 502, 503, 504})
# Kick-off: only what means "not started, try later" (IG 3.0.0 and RFC 9110).
_KICKOFF_RETRY = frozenset({429, 503})
_CHUNK = 1 << 16
_FLUSH = 1 << 20
_MAX_MANIFEST_PAGES = 100_000
EXPIRED_HINT = (
    "run the same command with --restart to start a new export "
    "(or --restart-on-expired to do that automatically)"
)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean_progress(text: str | None) -> str | None:
    if not text:
        return None
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat[:120] or None


@dataclass(frozen=True)
class ExportRequest:
    """What to export. Validated on construction so a typo fails before any request."""

    level: str = "system"
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    type_filters: tuple[str, ...] = ()
    #: Patient ids to restrict a Patient/Group export to (IG ``patient``; sent by POST).
    patients: tuple[str, ...] = ()
    output_format: str = FHIR_NDJSON
    #: Ask the server for a manifest in pages (IG ``allowPartialManifests``).
    allow_partial_manifests: bool = False

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise BulkExportError(
                f"export level must be one of {', '.join(LEVELS)}", code="BULK_BAD_REQUEST"
            )
        if (self.level == "group") != (self.group_id is not None):
            raise BulkExportError(
                "a group export needs a group id (and only it)", code="BULK_BAD_REQUEST"
            )
        if self.group_id is not None and not _ID.match(self.group_id):
            raise BulkExportError("group id is not a FHIR id", code="BULK_BAD_REQUEST")
        for t in self.types:
            if not _TYPE.match(t):
                raise BulkExportError(f"not a resource type: {t[:64]!r}", code="BULK_BAD_REQUEST")
        for name, value in (("_since", self.since), ("_until", self.until)):
            if value is not None and not _INSTANT.match(value):
                raise BulkExportError(
                    f"{name} must be a FHIR instant with time zone, e.g. 2024-01-01T00:00:00Z",
                    code="BULK_BAD_REQUEST",
                )
        if self.patients and self.level == "system":
            raise BulkExportError(
                "the patient parameter needs a Patient or Group export", code="BULK_BAD_REQUEST"
            )
        for pid in self.patients:
            if not _ID.match(pid):
                raise BulkExportError("patient ids must be FHIR ids", code="BULK_BAD_REQUEST")
        for f in self.type_filters:
            if not _TYPE_FILTER.match(f):
                raise BulkExportError(
                    "_typeFilter must look like Type?param=value", code="BULK_BAD_REQUEST"
                )

    @property
    def path(self) -> str:
        if self.level == "patient":
            return "Patient/$export"
        if self.level == "group":
            return f"Group/{self.group_id}/$export"
        return "$export"

    def params(self) -> list[tuple[str, str]]:
        params = [("_outputFormat", self.output_format)]
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since:
            params.append(("_since", self.since))
        if self.until:
            params.append(("_until", self.until))
        params.extend(("_typeFilter", f) for f in self.type_filters)
        if self.allow_partial_manifests:
            params.append(("allowPartialManifests", "true"))
        return params

    @property
    def method(self) -> str:
        """GET, unless ``patient`` is used (the IG allows it only in a POST body)."""
        return "POST" if self.patients else "GET"

    def parameters_resource(self) -> dict[str, Any]:
        """The POST kick-off body: a FHIR ``Parameters`` resource."""
        params: list[dict[str, Any]] = []
        for name, value in self.params():
            if name == "allowPartialManifests":
                params.append({"name": name, "valueBoolean": True})
                continue
            key = "valueInstant" if name in ("_since", "_until") else "valueString"
            params.append({"name": name, key: value})
        params.extend(
            {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}
            for pid in self.patients
        )
        return {"resourceType": "Parameters", "parameter": params}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("types", "type_filters", "patients"):
            data[key] = list(data[key])
        if not self.allow_partial_manifests:  # states saved before the option stay resumable
            del data["allow_partial_manifests"]
        return data


@dataclass(frozen=True)
class ExportProgress:
    """One progress event, for a progress bar or a log (no URLs, no content)."""

    phase: str  # kickoff | resume | polling | manifest_page | manifest | file | expired | done
    polls: int = 0
    message: str | None = None
    next_poll: float | None = None
    files_total: int = 0
    files_done: int = 0
    resources: int = 0
    bytes: int = 0


ProgressHook = Callable[[ExportProgress], None]


@dataclass
class ExportResult:
    out_dir: Path
    transaction_time: str
    request: dict[str, Any]
    files: list[FileRecord]
    resumed: bool
    polls: int
    job_deleted: bool
    fhir_version: str | None = None
    resources_by_type: dict[str, int] = field(default_factory=dict)
    manifest_pages: int = 1
    restarted_on_expired: bool = False

    @property
    def partial(self) -> bool:
        """The server reported failures (``error[]``): some resources are missing."""
        return any(f.errors for f in self.files if f.kind == "error")

    @property
    def failed_types(self) -> list[str]:
        """Types named by the failures; ``"unknown"`` when an outcome names none."""
        names: set[str] = set()
        for f in self.files:
            if f.kind == "error" and f.errors:
                names.update(f.failed_types or {"unknown": f.errors})
        return sorted(names)

    @property
    def next_since(self) -> str | None:
        """``_since`` for the next incremental export, only after a complete one.

        After a partial export, the failed resources were never received: an
        incremental export from its transactionTime would skip them for good.
        """
        return None if self.partial else self.transaction_time

    def _sum(self, kind: str, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files if f.kind == kind)

    @property
    def resources(self) -> int:
        return self._sum("output", "resources")

    @property
    def bad_lines(self) -> int:
        return sum(f.bad_lines for f in self.files)

    @property
    def error_outcomes(self) -> int:
        return self._sum("error", "resources")

    @property
    def error_codes(self) -> dict[str, int]:
        codes: dict[str, int] = {}
        for f in self.files:
            for code, n in f.codes.items():
                codes[code] = codes.get(code, 0) + n
        return codes

    @property
    def deleted(self) -> int:
        return sum(f.codes.get("DELETE", 0) for f in self.files if f.kind == "deleted")

    @property
    def deleted_by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            if f.kind == "deleted":
                for t, n in f.by_type.items():
                    out[t] = out.get(t, 0) + n
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "transaction_time": self.transaction_time,
            "next_since": self.next_since,
            "request": self.request,
            "resumed": self.resumed,
            "polls": self.polls,
            "job_deleted": self.job_deleted,
            "fhir_version": self.fhir_version,
            "files": len([f for f in self.files if f.kind == "output"]),
            "resources": self.resources,
            "resources_by_type": self.resources_by_type,
            "bad_lines": self.bad_lines,
            "error_outcomes": self.error_outcomes,
            "error_codes": self.error_codes,
            "deleted": self.deleted,
            "deleted_by_type": self.deleted_by_type,
            "partial": self.partial,
            "failed_types": self.failed_types,
            "manifest_pages": self.manifest_pages,
            "restarted_on_expired": self.restarted_on_expired,
        }


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


def parse_manifest(body: object) -> dict[str, Any]:
    """Check the completion manifest's shape; return it unchanged."""
    if not isinstance(body, dict):
        raise FhirProtocolError("export manifest is not a JSON object")
    if not isinstance(body.get("transactionTime"), str):
        raise FhirProtocolError("export manifest has no transactionTime")
    for key in ("output", "error", "deleted"):
        items = body.get(key, [])
        if not isinstance(items, list):
            raise FhirProtocolError(f"export manifest {key} is not a list")
        for item in items:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("url"), str)
                and isinstance(item.get("type"), str)
                and _TYPE.match(item["type"])
                and urlsplit(item["url"]).scheme in ("http", "https")
            ):
                raise FhirProtocolError(
                    f"export manifest {key} entry lacks a valid type or http(s) url"
                )
    if not isinstance(body.get("output"), list):
        raise FhirProtocolError("export manifest has no output list")
    links = body.get("link", [])
    if not isinstance(links, list):
        raise FhirProtocolError("export manifest link is not a list")
    return body


def manifest_next(manifest: Mapping[str, Any]) -> str | None:
    """The ``link`` with ``relation = next`` of a manifest page, if any."""
    for link in manifest.get("link") or []:
        if isinstance(link, Mapping) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return url
    return None


def merge_manifest_pages(pages: list[dict[str, Any]]) -> dict[str, Any]:
    """One manifest from its pages: file lists concatenated (a URL listed twice counts once).

    ``transactionTime`` and ``requiresAccessToken`` come from the first page,
    as the IG says every page repeats them.
    """
    merged = {k: v for k, v in pages[0].items() if k != "link"}
    for key in ("output", "error", "deleted"):
        seen: set[str] = set()
        items: list[Any] = []
        for page in pages:
            for item in page.get(key, []) or []:
                if item["url"] not in seen:
                    seen.add(item["url"])
                    items.append(item)
        merged[key] = items
    return merged


def plan_files(manifest: Mapping[str, Any]) -> list[FileRecord]:
    """Local file names for every manifest entry (never derived from server URLs)."""
    records: list[FileRecord] = []
    counters: dict[tuple[str, str], int] = {}
    for kind, folder in (("output", ""), ("error", "error/"), ("deleted", "deleted/")):
        for item in manifest.get(kind, []) or []:
            key = (kind, item["type"])
            counters[key] = counters.get(key, 0) + 1
            name = f"{folder}{item['type']}.{counters[key]:03d}.ndjson"
            records.append(FileRecord(kind=kind, type=item["type"], url=item["url"], path=name))
    return records


class BulkExporter:
    """Runs ``$export`` jobs against one :class:`FhirClient`."""

    def __init__(
        self,
        client: FhirClient,
        *,
        deadline: float = 24 * 3600.0,
        poll_backoff_base: float = 1.0,
        poll_backoff_cap: float = 120.0,
        retry_after_cap: float = 3600.0,
        poll_floor: float = 1.0,
        concurrency: int = 4,
        check_capability: bool = True,
        delete_when_done: bool = True,
        download_attempts: int = 4,
        max_line_bytes: int = DEFAULT_MAX_LINE,
        on_progress: ProgressHook | None = None,
    ) -> None:
        if concurrency < 1:
            raise BulkExportError("concurrency must be at least 1", code="BULK_BAD_REQUEST")
        if poll_floor < 0:
            raise BulkExportError("the polling floor must not be negative", code="BULK_BAD_REQUEST")
        self.client = client
        self.deadline = deadline
        self.poll_backoff_base = poll_backoff_base
        self.poll_backoff_cap = poll_backoff_cap
        self.retry_after_cap = retry_after_cap
        self.poll_floor = poll_floor
        self.concurrency = concurrency
        self.check_capability = check_capability
        self.delete_when_done = delete_when_done
        self.download_attempts = download_attempts
        self.max_line_bytes = max_line_bytes
        self.on_progress = on_progress
        self._known_types: frozenset[str] | None = None

    def _emit(self, event: ExportProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(event)

    # ------------------------------------------------------------ kick-off
    async def kick_off(self, request: ExportRequest) -> str:
        """Start a job; return its absolute status URL.

        Retried only where no job can have started: 429/503, a transient
        OperationOutcome, or a connection that was never made. A connection
        lost after sending is an error (``FHIR_REQUEST_UNCERTAIN``), not a retry.
        """
        if self.check_capability:
            cap = await self.client.capability()
            if request.level not in cap.export_levels:
                raise FhirCapabilityError(
                    f"the server's CapabilityStatement declares no {request.level}-level $export "
                    f"(declared: {', '.join(sorted(cap.export_levels)) or 'none'})"
                )
        self._emit(ExportProgress(phase="kickoff"))
        post = request.method == "POST"
        headers = {"Prefer": "respond-async"}
        if post:
            headers["Content-Type"] = FHIR_JSON
        async with self.client.open(
            request.method,
            request.path,
            params=None if post else request.params(),
            data=orjson.dumps(request.parameters_resource()) if post else None,
            headers=headers,
            accept=FHIR_JSON,
            what=f"$export kick-off ({request.level})",
            retry_statuses=_KICKOFF_RETRY,
            resend_safe=False,
        ) as resp:
            if resp.status != 202:
                raise FhirProtocolError(
                    f"$export kick-off answered HTTP {resp.status}, expected 202 Accepted"
                )
            location = resp.headers.get("Content-Location")
            if not location:
                raise FhirProtocolError("$export kick-off answered 202 without Content-Location")
            return self.client.rebase(str(resp.url.join(yarl.URL(location))))

    # ------------------------------------------------------------- polling
    def poll_delay(self, polls: int, retry_after: float | None) -> float:
        """The server's ``Retry-After`` when it sends one, else capped exponential backoff.

        Polling sooner than the server asked only earns 429s, so ``Retry-After``
        is honoured as given; ``retry_after_cap`` (an hour) only guards against
        a server asking for days. Never below ``poll_floor``, even when a server
        says ``Retry-After: 0``. The overall deadline still applies.
        """
        if retry_after is not None:
            delay = min(retry_after, self.retry_after_cap)
        else:
            delay = min(self.poll_backoff_cap, self.poll_backoff_base * (2.0 ** min(polls, 30)))
        return max(self.poll_floor, delay)

    async def poll(self, status_url: str, *, state: ExportState | None = None) -> dict[str, Any]:
        """Poll until the manifest arrives; raise :class:`BulkExportTimeout` past the deadline."""
        clock = self.client.clock
        deadline_at = clock() + self.deadline
        polls = 0

        def failed(status: int, body: Any) -> bool:
            # 500 without an OperationOutcome is a proxy hiccup; with one, the job failed.
            return status == 500 and not is_operation_outcome(body)

        while True:
            polls += 1
            if state is not None:
                state.polls += 1
            try:
                async with self.client.open(
                    "GET",
                    status_url,
                    accept=FHIR_JSON,
                    authenticate=True if self.client.auth else None,
                    what="$export status",
                    retry_statuses=_POLL_RETRY,
                    retry_on=failed,
                    min_wait=self.poll_floor,
                ) as resp:
                    if resp.status == 200:
                        return parse_manifest(await read_json(resp, what="$export manifest"))
                    if resp.status != 202:
                        raise FhirProtocolError(
                            f"$export status answered HTTP {resp.status}, expected 202 or 200"
                        )
                    progress = _clean_progress(resp.headers.get("X-Progress"))
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except FhirHttpError as exc:
                if exc.status in (404, 410):
                    raise BulkExportError(
                        f"the server no longer knows this export job (HTTP {exc.status}); "
                        "start a new one (--restart)",
                        code="BULK_EXPORT_EXPIRED",
                    ) from exc
                raise BulkExportError(
                    f"export job failed: {exc}", code="BULK_EXPORT_FAILED"
                ) from exc
            delay = self.poll_delay(polls - 1, retry_after)
            self._emit(
                ExportProgress(phase="polling", polls=polls, message=progress, next_poll=delay)
            )
            if clock() + delay > deadline_at:
                raise BulkExportTimeout(
                    f"export not complete after {polls} polls within the {self.deadline:g}s deadline; "
                    "the job was kept: run the same command again to resume"
                )
            await self.client.sleep(delay)

    async def complete_manifest(
        self, first: dict[str, Any], *, state: ExportState | None = None
    ) -> tuple[dict[str, Any], int]:
        """Follow a paged manifest's ``link`` next to the end; return it merged and the page count.

        A next page is polled like the status URL (it may answer 202 with
        ``Retry-After`` until the server has it), so the same floor and
        deadline apply. A link seen twice is a server bug, not a reason to loop.
        """
        pages = [first]
        seen: set[str] = set()
        url = manifest_next(first)
        while url is not None:
            target = self.client.rebase(url)
            if target in seen or len(pages) >= _MAX_MANIFEST_PAGES:
                raise FhirProtocolError("export manifest pages loop (a next link seen twice)")
            seen.add(target)
            page = await self.poll(target, state=state)
            pages.append(page)
            self._emit(ExportProgress(phase="manifest_page", polls=len(pages)))
            url = manifest_next(page)
        return merge_manifest_pages(pages), len(pages)

    # ----------------------------------------------------------- downloads
    async def _fetch_lines(
        self, url: str, *, requires_token: bool
    ) -> AsyncIterator[tuple[NdjsonSplitter, bytes]]:
        """One attempt: yield ``(splitter, line)`` for each line of the file."""
        try:
            async with self.client.open(
                "GET",
                self.client.rebase(url),
                accept=FHIR_NDJSON,
                headers={"Accept-Encoding": "gzip"},
                authenticate=bool(requires_token and self.client.auth),
                what="$export file download",
            ) as resp:
                splitter = NdjsonSplitter(max_line_bytes=self.max_line_bytes)
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    for line in splitter.feed(chunk):
                        yield splitter, line
                for line in splitter.finish():
                    yield splitter, line
        except FhirHttpError as exc:
            if exc.status in (404, 410):
                raise BulkExportError(
                    f"the server no longer has this export's files (HTTP {exc.status} on a "
                    f"download: they expired); {EXPIRED_HINT}",
                    code="BULK_FILE_EXPIRED",
                ) from exc
            raise

    def known_types(self) -> frozenset[str]:
        if self._known_types is None:
            from fhir_adapters.stream import known_resource_types

            self._known_types = known_resource_types()
        return self._known_types

    async def download_file(
        self, record: FileRecord, out_dir: Path, *, requires_token: bool
    ) -> FileRecord:
        """Stream one manifest file to ``out_dir/record.path`` (atomic rename), with retries.

        Lines are written in 1 MiB batches by a worker thread: the event loop
        only parses and hashes.
        """
        target = out_dir / record.path
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        attempt = 0
        while True:
            digest = hashlib.sha256()
            rec = FileRecord(kind=record.kind, type=record.type, url=record.url, path=record.path)
            splitter: NdjsonSplitter | None = None
            try:
                fh = await asyncio.to_thread(open, part, "wb")
                try:
                    buffer = bytearray()
                    async for splitter, line in self._fetch_lines(
                        record.url, requires_token=requires_token
                    ):
                        resource = splitter.parse(line)
                        if resource is None:
                            continue
                        self._account(rec, resource)
                        buffer += line
                        buffer += b"\n"
                        if len(buffer) >= _FLUSH:
                            await self._flush(fh, buffer, digest, rec)
                    await self._flush(fh, buffer, digest, rec)
                finally:
                    await asyncio.to_thread(fh.close)
                await asyncio.to_thread(os.replace, part, target)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
                attempt += 1
                if attempt >= self.download_attempts:
                    raise BulkExportError(
                        f"download of a {record.type} file failed after {attempt} attempts "
                        f"({type(exc).__name__})",
                        code="BULK_DOWNLOAD_FAILED",
                    ) from exc
                await self.client.sleep(self.client.retry.delay(attempt - 1, None))
                continue
            finally:
                await asyncio.to_thread(part.unlink, missing_ok=True)
            if splitter is not None:
                rec.bad_lines = splitter.stats.bad_lines
                rec.resources = splitter.stats.resources
                if rec.kind != "deleted":
                    rec.by_type = dict(splitter.stats.by_type)
            rec.sha256 = "sha256:" + digest.hexdigest()
            return rec

    @staticmethod
    async def _flush(fh: Any, buffer: bytearray, digest: Any, rec: FileRecord) -> None:
        if not buffer:
            return
        digest.update(buffer)
        rec.bytes += len(buffer)
        await asyncio.to_thread(fh.write, buffer)
        buffer.clear()

    def _account(self, rec: FileRecord, resource: Mapping[str, Any]) -> None:
        """Per-kind bookkeeping: outcome codes and failed types of error files, deletions by type."""
        if rec.kind == "error":
            for code in outcome_codes(resource):
                rec.codes[code] = rec.codes.get(code, 0) + 1
            if is_error_outcome(resource):
                rec.errors += 1
                for rtype in outcome_types(resource, self.known_types()):
                    rec.failed_types[rtype] = rec.failed_types.get(rtype, 0) + 1
        elif rec.kind == "deleted":
            for entry in resource.get("entry") or []:
                request = entry.get("request") if isinstance(entry, Mapping) else None
                if isinstance(request, Mapping) and request.get("method") == "DELETE":
                    rec.codes["DELETE"] = rec.codes.get("DELETE", 0) + 1
                    rtype = str(request.get("url", "")).split("/", 1)[0]
                    if _TYPE.match(rtype):
                        rec.by_type[rtype] = rec.by_type.get(rtype, 0) + 1

    async def download_all(self, out_dir: Path, state: ExportState) -> None:
        """Download every manifest file not yet done, ``concurrency`` at a time."""
        assert state.manifest is not None
        requires_token = bool(state.manifest.get("requiresAccessToken", False))
        plan = plan_files(state.manifest)

        def pending() -> list[FileRecord]:
            return [
                r
                for r in plan
                if r.url not in state.files or not (out_dir / state.files[r.url].path).exists()
            ]

        todo = await asyncio.to_thread(pending)
        if any(r.kind == "error" for r in todo):
            await asyncio.to_thread(self.known_types)  # read once, off the loop
        total = len(plan)
        semaphore = asyncio.Semaphore(self.concurrency)
        save_lock = asyncio.Lock()

        async def one(record: FileRecord) -> None:
            async with semaphore:
                done = await self.download_file(record, out_dir, requires_token=requires_token)
            async with save_lock:
                state.files[done.url] = done
                await asyncio.to_thread(save_state, out_dir, state)
                self._emit(
                    ExportProgress(
                        phase="file",
                        files_total=total,
                        files_done=len(state.files),
                        resources=sum(
                            f.resources for f in state.files.values() if f.kind == "output"
                        ),
                        bytes=sum(f.bytes for f in state.files.values()),
                    )
                )

        try:
            async with asyncio.TaskGroup() as group:
                for record in todo:
                    group.create_task(one(record))
        except BaseExceptionGroup as group_error:
            # Callers (and the CLI's one-line errors) want the first real failure;
            # files finished before it are already recorded in the state.
            raise _first_error(group_error) from None

    async def delete_job(self, status_url: str) -> bool:
        """``DELETE`` the status URL so the server can free the files; failures are reported, not fatal."""
        try:
            async with self.client.open(
                "DELETE",
                status_url,
                accept=FHIR_JSON,
                authenticate=True if self.client.auth else None,
                what="$export delete",
            ):
                return True
        except (FhirHttpError, BulkExportError, FhirProtocolError):
            return False
        except Exception as exc:  # network trouble after a finished export is not fatal
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False

    async def cancel(self, out_dir: str | Path) -> bool:
        """Cancel the job recorded in ``out_dir`` on the server (``DELETE`` its status URL).

        The state is kept, marked cancelled, so a later run starts a new job
        instead of polling a cancelled one. Returns whether the server accepted.
        """
        out = Path(out_dir)
        state = await asyncio.to_thread(load_state, out)
        if state is None or state.status_url is None:
            raise BulkExportError(f"no export job is recorded in {out}", code="BULK_NO_JOB")
        if state.job_deleted:
            return True
        if state.base_url != self.client.base_url:
            raise BulkExportError(
                "the job in this directory belongs to another server (--base differs)",
                code="BULK_STATE_MISMATCH",
            )
        accepted = await self.delete_job(state.status_url)
        if accepted:
            state.job_deleted = True
            state.cancelled = not state.completed
            await asyncio.to_thread(save_state, out, state)
        return accepted

    # ---------------------------------------------------------------- runs
    async def run(
        self,
        request: ExportRequest,
        out_dir: str | Path,
        *,
        restart: bool = False,
        restart_on_expired: bool = False,
    ) -> ExportResult:
        """Export into ``out_dir``, resuming the job recorded there if any.

        ``restart_on_expired``: when the server has dropped the files (410 on a
        download) or the job, start a new export once instead of failing.
        """
        try:
            return await self._run(request, Path(out_dir), restart=restart)
        except BulkExportError as exc:
            if not restart_on_expired or exc.code not in (
                "BULK_FILE_EXPIRED",
                "BULK_EXPORT_EXPIRED",
            ):
                raise
            self._emit(ExportProgress(phase="expired"))
            result = await self._run(request, Path(out_dir), restart=True)
            result.restarted_on_expired = True
            return result

    async def _run(self, request: ExportRequest, out: Path, *, restart: bool) -> ExportResult:
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
        state = await asyncio.to_thread(load_state, out)
        resumed = False
        if state is not None and (restart or state.cancelled):
            if state.status_url and not state.completed and not state.job_deleted:
                await self.delete_job(state.status_url)
            await asyncio.to_thread(_remove_files, out, state)
            state = None
        if state is not None:
            if state.base_url != self.client.base_url or state.request != request.as_dict():
                raise BulkExportError(
                    "this directory holds an export of a different server or request; "
                    "use another --out directory or --restart",
                    code="BULK_STATE_MISMATCH",
                )
            if state.completed:
                return self._result(out, state, resumed=True)
            resumed = state.status_url is not None
        else:
            foreign = await asyncio.to_thread(lambda: [p.name for p in out.glob("*.ndjson")])
            if foreign:
                raise BulkExportError(
                    f"{out} already holds {len(foreign)} NDJSON files not from this export; "
                    "use an empty directory",
                    code="BULK_OUT_NOT_EMPTY",
                )
            state = ExportState(base_url=self.client.base_url, request=request.as_dict())
        if state.status_url is None:
            if self.check_capability:
                state.fhir_version = (await self.client.capability()).fhir_version
            state.status_url = await self.kick_off(request)
            state.kicked_off_at = _now_iso()
            await asyncio.to_thread(save_state, out, state)
        else:
            self._emit(ExportProgress(phase="resume", polls=state.polls))
        if state.manifest is None:
            try:
                first = await self.poll(state.status_url, state=state)
                manifest, pages = await self.complete_manifest(first, state=state)
                # Manifest and transactionTime are saved together: a resume never sees one alone.
                state.manifest = manifest
                state.manifest_pages = pages
                state.transaction_time = manifest["transactionTime"]
            finally:
                await asyncio.to_thread(save_state, out, state)
            self._emit(ExportProgress(phase="manifest", files_total=len(plan_files(manifest))))
        await self.download_all(out, state)
        state.completed = True
        result = self._result(out, state, resumed=resumed)
        state.partial = result.partial
        state.failed_types = result.failed_types
        await asyncio.to_thread(save_state, out, state)
        if self.delete_when_done:
            state.job_deleted = result.job_deleted = await self.delete_job(state.status_url)
            await asyncio.to_thread(save_state, out, state)
        self._emit(ExportProgress(phase="done", resources=result.resources, polls=state.polls))
        return result

    @staticmethod
    def _result(out: Path, state: ExportState, *, resumed: bool) -> ExportResult:
        assert state.manifest is not None and state.transaction_time is not None
        files = sorted(state.files.values(), key=lambda r: (r.kind, r.path))
        by_type: dict[str, int] = {}
        for f in files:
            if f.kind == "output":
                for t, n in f.by_type.items():
                    by_type[t] = by_type.get(t, 0) + n
        return ExportResult(
            out_dir=out,
            transaction_time=state.transaction_time,
            request=state.request,
            files=files,
            resumed=resumed,
            polls=state.polls,
            job_deleted=state.job_deleted,
            fhir_version=state.fhir_version,
            resources_by_type=by_type,
            manifest_pages=max(1, state.manifest_pages),
        )

    async def stream(
        self, request: ExportRequest, *, status_url: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The resource stream of an export, straight from the server (nothing on disk).

        Output files are read one after another; bad lines are skipped and
        counted in :attr:`stream_bad_lines`. The job is deleted at the end.
        """
        self.stream_bad_lines = 0
        url = status_url or await self.kick_off(request)
        manifest, _pages = await self.complete_manifest(await self.poll(url))
        requires_token = bool(manifest.get("requiresAccessToken", False))
        for record in plan_files(manifest):
            if record.kind != "output":
                continue
            splitter: NdjsonSplitter | None = None
            async for splitter, line in self._fetch_lines(
                record.url, requires_token=requires_token
            ):
                resource = splitter.parse(line)
                if resource is not None:
                    yield resource
            if splitter is not None:
                self.stream_bad_lines += splitter.stats.bad_lines
        if self.delete_when_done:
            await self.delete_job(url)

    stream_bad_lines: int = 0


def _remove_files(out: Path, state: ExportState) -> None:
    for rec in state.files.values():
        (out / rec.path).unlink(missing_ok=True)
    if state.manifest is not None:  # files of a run killed before its state recorded them
        for rec in plan_files(state.manifest):
            (out / rec.path).unlink(missing_ok=True)


@dataclass
class ReadStats:
    files: int = 0
    resources: int = 0
    bad_lines: int = 0


def read_export_dir(
    out_dir: str | Path, *, stats: ReadStats | None = None
) -> Iterator[dict[str, Any]]:
    """The resource stream of a finished export directory (``output`` files only).

    Files are read in manifest order from the state file when present, else
    every top-level ``*.ndjson`` in name order. Bad lines are counted in
    ``stats``, never fatal.
    """
    out = Path(out_dir)
    stats = stats if stats is not None else ReadStats()
    state = load_state(out)
    paths: list[Path]
    if state is not None and state.manifest is not None:
        done = {rec.url: rec.path for rec in state.files.values()}
        paths = [
            out / done[r.url]
            for r in plan_files(state.manifest)
            if r.kind == "output" and r.url in done
        ]
    else:
        paths = sorted(out.glob("*.ndjson"))
    for path in paths:
        stats.files += 1
        counts = LineStats()
        try:
            for _line, value in read_resource_lines(path, counts):
                yield value
        finally:
            stats.resources += counts.resources
            stats.bad_lines += counts.bad_lines
