"""The hospital gateway pulls for itself: a local FHIR snapshot kept in sync with its server.

With ``[node.fhir] kind = "export"`` or ``"search"``, ``ehds node serve`` keeps
a copy of the hospital's FHIR data on local disk and every dry run or job
reads that copy:

- **export**: Bulk Data ``$export`` (SMART Backend Services when configured),
  incremental with ``_since`` = the last complete export's transactionTime;
  the manifest's ``deleted`` files remove resources. A partial export (failures
  under ``error[]``) is a failed sync: its transactionTime never becomes the
  next ``_since``, so nothing is lost for good.
- **search**: ``GET [type]?_lastUpdated=gt<since>`` for changes and
  ``[type]/_history?_since=`` for deletions; a server without ``_history``
  gets a full pull instead (which applies deletions by construction).

A sync runs on a schedule (``sync_interval_seconds``) and on demand before a
job (``sync_before_job``); one at a time, callers arriving during a sync wait
for it instead of starting another. Each sync writes a complete new version
folder ``versions/vNNNNNN`` (previous version + changes - deletions; a
resource listed twice keeps its latest ``meta.lastUpdated``), then switches
the ``current`` symlink atomically. A job resolves ``current`` once and reads
that folder to the end, so it never sees a half-written snapshot; the
previous versions are kept a while for jobs still reading them. A failed sync
changes nothing on disk and is visible: its error *code* (never a message,
never data) in ``/ready`` and ``/metrics``, the previous snapshot still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.config import FhirSettings, GatewayConfig
from gateway.errors import UnavailableError

if TYPE_CHECKING:
    from fhir_adapters.sources.http import FhirClient

log = logging.getLogger("ehds.fhir_sync")

NETWORK_KINDS = frozenset({"search", "export"})
META_FILE = ".snapshot"  # no .json suffix: folder readers must not take it for FHIR data
KEEP_VERSIONS = 3
#: Search mode asks for changes since the last sync's start minus this much, so a
#: clock difference between gateway and server cannot hide a change (re-reading
#: a few is harmless: merging is idempotent).
SEARCH_OVERLAP = timedelta(minutes=5)
_HISTORY_UNSUPPORTED = frozenset({400, 403, 404, 405, 501})
Key = tuple[str, str]


class SyncError(UnavailableError):
    """A sync that cannot produce a trustworthy snapshot (the previous one stays)."""


# ------------------------------------------------------------------ snapshot files (pure I/O)
def _lines(path: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """``(line, resource)`` for each FHIR resource line of an NDJSON file; others skipped."""
    from fhir_adapters.sources.ndjson_lines import read_resource_lines

    return read_resource_lines(path)


def _key(resource: dict[str, Any]) -> Key | None:
    rid = resource.get("id")
    return (resource["resourceType"], rid) if isinstance(rid, str) and rid else None


def _updated(resource: dict[str, Any]) -> str:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else ""


def read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads((folder / META_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def build_version(
    previous: Path | None,
    changes: Iterable[Path],
    deleted: set[Key],
    dest: Path,
    meta: dict[str, Any],
) -> dict[str, int]:
    """Write ``previous`` + ``changes`` - ``deleted`` into the new folder ``dest``.

    Memory holds keys only (type, id, lastUpdated), never resources: changes
    are read twice, once to pick each key's latest version, once to write it.
    A resource both changed and deleted is kept (it exists again).
    """
    change_files = list(changes)
    winner: dict[Key, tuple[str, int]] = {}
    seq = 0
    for path in change_files:
        for _line, resource in _lines(path):
            seq += 1
            key = _key(resource)
            if key is None:
                continue
            stamp = _updated(resource)
            if key not in winner or stamp >= winner[key][0]:
                winner[key] = (stamp, seq)
    dest.mkdir(parents=True)
    counts: dict[str, int] = {}
    handles: dict[str, Any] = {}

    def write(rtype: str, line: bytes) -> None:
        fh = handles.get(rtype)
        if fh is None:
            fh = handles[rtype] = open(dest / f"{rtype}.ndjson", "wb")  # noqa: SIM115
        fh.write(line + b"\n")
        counts[rtype] = counts.get(rtype, 0) + 1

    try:
        if previous is not None:
            for path in sorted(previous.glob("*.ndjson")):
                for line, resource in _lines(path):
                    key = _key(resource)
                    if key is not None and (key in winner or key in deleted):
                        continue
                    write(resource["resourceType"], line)
        seq = 0
        for path in change_files:
            for line, resource in _lines(path):
                seq += 1
                key = _key(resource)
                if key is not None and winner[key][1] == seq:
                    write(resource["resourceType"], line)
    finally:
        for fh in handles.values():
            fh.close()
    meta = {**meta, "resources": counts}
    (dest / META_FILE).write_bytes(orjson.dumps(meta, option=orjson.OPT_SORT_KEYS))
    return counts


def switch_current(root: Path, version_dir: Path) -> None:
    """Point ``root/current`` at ``version_dir`` in one atomic rename."""
    tmp = root / f".current-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(version_dir, root), tmp)
    os.replace(tmp, root / "current")


def prune(root: Path, keep: int = KEEP_VERSIONS) -> None:
    versions = sorted((root / "versions").glob("v*"))
    for old in versions[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in (root / "versions").glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def deleted_keys_from_bundles(paths: Iterable[Path]) -> set[Key]:
    """``(type, id)`` of every ``DELETE`` entry in Bulk Data ``deleted`` Bundles."""
    out: set[Key] = set()
    for path in paths:
        for _line, bundle in _lines(path):
            out.update(_deleted_entries(bundle))
    return out


def _deleted_entries(bundle: dict[str, Any]) -> set[Key]:
    out: set[Key] = set()
    for entry in bundle.get("entry") or []:
        request = entry.get("request") if isinstance(entry, dict) else None
        if isinstance(request, dict) and request.get("method") == "DELETE":
            rtype, _, rid = str(request.get("url", "")).partition("/")
            rid = rid.split("/", 1)[0].split("?", 1)[0]
            if rtype and rid:
                out.add((rtype, rid))
    return out


# ------------------------------------------------------------------ status
@dataclass
class SyncStatus:
    version: int = 0
    synced_at: float | None = None
    resources: int = 0
    last_error: str | None = None
    last_attempt: float | None = None
    failures: int = 0
    syncs: int = 0

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "snapshot_version": self.version,
            "snapshot_age_seconds": None
            if self.synced_at is None
            else round(max(0.0, now - self.synced_at), 1),
            "resources": self.resources,
            "last_error": self.last_error,
            "sync_failures": self.failures,
        }


# ------------------------------------------------------------------ the syncer
class FhirSync:
    """Keeps ``root/current`` in sync with the FHIR server of ``settings``."""

    def __init__(self, settings: FhirSettings, root: Path, *, clock: Any = time.time) -> None:
        if settings.kind not in NETWORK_KINDS:
            raise ValueError("FhirSync needs a search or export source")
        self.settings = settings
        self.root = root
        self.clock = clock
        self.status = SyncStatus()
        self._lock = asyncio.Lock()
        self._starts = 0
        self._background: set[asyncio.Future[bool]] = set()
        current = self.current()
        meta = read_meta(current) if current is not None else None
        if meta is not None:
            self.status.version = int(meta.get("version", 0))
            self.status.synced_at = float(meta.get("synced_at", 0.0))
            self.status.resources = sum(dict(meta.get("resources") or {}).values())

    # ---- reading
    def current(self) -> Path | None:
        """The folder of the current snapshot, resolved once (a job reads only it)."""
        link = self.root / "current"
        try:
            target = link.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        return target if target.is_dir() else None

    def _meta(self) -> dict[str, Any] | None:
        current = self.current()
        return read_meta(current) if current is not None else None

    # ---- syncing
    async def sync(self) -> bool:
        """A sync that starts after this call; True when it succeeded.

        Callers arriving together share one: whoever gets the lock first syncs,
        the others find that a sync started after they asked and return. A sync
        already running when we asked may have missed a recent change, so it
        does not count.
        """
        ticket = self._starts
        async with self._lock:
            if self._starts > ticket:
                return self.status.last_error is None
            self._starts += 1
            try:
                await self._sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                code = getattr(exc, "code", None)
                self.status.last_error = code if isinstance(code, str) else type(exc).__name__
                self.status.failures += 1
                log.warning("fhir sync failed: %s", self.status.last_error)
            else:
                self.status.last_error = None
            finally:
                self.status.last_attempt = self.clock()
            return self.status.last_error is None

    async def before_job(self) -> None:
        """On-demand sync before a job; a failure leaves the previous snapshot in use.

        A slow server must not hold a job for hours: after ``sync_wait_seconds``
        the job goes on with the snapshot it has, and the sync finishes on its own.
        """
        if not self.settings.sync_before_job:
            return
        task = asyncio.ensure_future(self.sync())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout=self.settings.sync_wait_seconds)

    async def run_forever(self) -> None:
        interval = self.settings.sync_interval_seconds
        while True:
            await self.sync()
            if interval <= 0:
                return
            await asyncio.sleep(interval)

    async def _client(self) -> FhirClient:
        from fhir_adapters.sources.http import FhirClient, RetryPolicy
        from fhir_adapters.sources.smart_auth import SmartBackendAuth, load_private_jwk

        s = self.settings
        auth = None
        if s.client_id and s.key is not None:
            auth = SmartBackendAuth(
                client_id=s.client_id,
                key=await asyncio.to_thread(load_private_jwk, s.key),
                token_url=s.token_url or None,
                discovery_base=None if s.token_url else s.base_url,
            )
        return FhirClient(s.base_url, auth=auth, retry=RetryPolicy(max_attempts=4))

    async def _sync_once(self) -> None:
        meta = await asyncio.to_thread(self._meta)
        since = meta.get("since") if meta else None
        work = self.root / "work"
        await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
        started = datetime.now(UTC)
        async with await self._client() as client:
            if self.settings.kind == "export":
                changes, deleted, next_since, full = await self._pull_export(client, work, since)
            else:
                changes, deleted, full = await self._pull_search(client, work, since)
                next_since = (started - SEARCH_OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
        version = (int(meta.get("version", 0)) if meta else 0) + 1
        await asyncio.to_thread(
            self._publish, version, None if full else self.current(), changes, deleted, next_since
        )
        await asyncio.to_thread(shutil.rmtree, work, True)

    def _publish(
        self,
        version: int,
        previous: Path | None,
        changes: list[Path],
        deleted: set[Key],
        since: str,
    ) -> None:
        versions = self.root / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        tmp = versions / f".tmp-v{version:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        synced_at = self.clock()
        meta = {
            "version": version,
            "since": since,
            "synced_at": synced_at,
            "kind": self.settings.kind,
        }
        counts = build_version(previous, changes, deleted, tmp, meta)
        final = versions / f"v{version:06d}"
        shutil.rmtree(final, ignore_errors=True)  # left by a crash before the switch
        os.replace(tmp, final)
        switch_current(self.root, final)
        self.status.version = version
        self.status.synced_at = synced_at
        self.status.resources = sum(counts.values())
        self.status.syncs += 1
        prune(self.root)

    async def _pull_export(
        self, client: FhirClient, work: Path, since: str | None
    ) -> tuple[list[Path], set[Key], str, bool]:
        from fhir_adapters.errors import BulkExportError
        from fhir_adapters.sources.bulk_export import BulkExporter, ExportRequest

        request = ExportRequest(types=self.settings.types, since=since)
        out = work / "export"
        exporter = BulkExporter(client, poll_floor=self.settings.poll_floor_seconds)
        try:
            result = await exporter.run(request, out, restart_on_expired=True)
        except BulkExportError as exc:
            if exc.code != "BULK_STATE_MISMATCH":  # a job of another request: start over
                raise
            await asyncio.to_thread(shutil.rmtree, out, True)
            result = await exporter.run(request, out, restart_on_expired=True)
        if result.partial:
            await asyncio.to_thread(shutil.rmtree, out, True)  # the next sync starts afresh
            raise SyncError(
                f"the export was partial (failed: {', '.join(result.failed_types)}); "
                "the previous snapshot stays in use",
                code="FHIR_SYNC_PARTIAL",
            )
        changes = [out / f.path for f in result.files if f.kind == "output"]
        deleted_files = [out / f.path for f in result.files if f.kind == "deleted"]
        deleted = await asyncio.to_thread(deleted_keys_from_bundles, deleted_files)
        return changes, deleted, result.transaction_time, since is None

    async def _types(self, client: FhirClient) -> tuple[str, ...]:
        if self.settings.types:
            return self.settings.types
        return tuple(sorted((await client.capability()).resource_types))

    async def _pull_search(
        self, client: FhirClient, work: Path, since: str | None
    ) -> tuple[list[Path], set[Key], bool]:
        from fhir_adapters.errors import FhirHttpError

        types = await self._types(client)
        deleted: set[Key] = set()
        full = since is None
        if not full:
            try:
                for rtype in types:
                    deleted |= await self._history_deletions(client, rtype, since or "")
            except FhirHttpError as exc:
                if exc.status not in _HISTORY_UNSUPPORTED:
                    raise
                full, deleted = True, set()  # no _history: a full pull applies deletions
        path = work / "changes.ndjson"
        params = [] if full else [("_lastUpdated", f"gt{since}")]
        await self._search_to_file(client, types, params, path)
        return [path], deleted, full

    async def _search_to_file(
        self, client: FhirClient, types: Iterable[str], params: list[tuple[str, str]], path: Path
    ) -> None:
        from fhir_adapters.sources.search import search

        fh = await asyncio.to_thread(open, path, "wb")
        try:
            buffer = bytearray()
            for rtype in types:
                async for resource in search(client, rtype, params):
                    buffer += orjson.dumps(resource) + b"\n"
                    if len(buffer) >= 1 << 20:
                        await asyncio.to_thread(fh.write, bytes(buffer))
                        buffer.clear()
            await asyncio.to_thread(fh.write, bytes(buffer))
        finally:
            await asyncio.to_thread(fh.close)

    async def _history_deletions(self, client: FhirClient, rtype: str, since: str) -> set[Key]:
        from fhir_adapters.sources.search import next_link

        out: set[Key] = set()
        url: str | None = f"{rtype}/_history"
        params: list[tuple[str, str]] | None = [("_since", since)]
        seen: set[str] = set()
        while url is not None and url not in seen:
            seen.add(url)
            bundle = await client.get_json(url, params=params, what=f"GET {rtype}/_history")
            if isinstance(bundle, dict):
                out |= {k for k in _deleted_entries(bundle) if k[0] == rtype}
                link = next_link(bundle)
                url, params = (client.rebase(link), None) if link else (None, None)
            else:
                url = None
        return out

    # ---- service views
    def ready_detail(self) -> dict[str, Any]:
        return self.status.as_dict(self.clock())


# ------------------------------------------------------------------ wiring into the node service
FHIR_SYNC_KEY = web.AppKey("ehds_fhir_sync", FhirSync)


def snapshot_root(config: GatewayConfig) -> Path:
    return config.node.fhir.snapshot_dir or config.data_dir / "fhir-snapshot"


def install_fhir_sync(app: web.Application, config: GatewayConfig, data: Any) -> None:
    """For search/export sources: sync on a schedule, serve jobs from the snapshot.

    Readiness (``fhir_source``) then means "a snapshot is there to serve";
    its version, age and the last sync error are shown with it.
    """
    from gateway.http.app import READY_KEY
    from gateway.http.middleware import METRICS_KEY

    if config.node.fhir.kind not in NETWORK_KINDS:
        return
    sync = FhirSync(config.node.fhir, snapshot_root(config))
    app[FHIR_SYNC_KEY] = sync
    data.snapshot = sync.current

    async def ready() -> dict[str, Any]:
        detail = sync.ready_detail()
        if sync.current() is None:
            raise SyncError(
                "no FHIR snapshot yet (the first sync has not succeeded)",
                code="FHIR_SNAPSHOT_MISSING",
            )
        return detail

    app[READY_KEY]["fhir_source"] = ready
    metrics = app[METRICS_KEY]
    metrics.gauge(
        "ehds_fhir_snapshot_version",
        "Version of the local FHIR snapshot.",
        lambda: sync.status.version,
    )
    metrics.gauge(
        "ehds_fhir_snapshot_age_seconds",
        "Seconds since the snapshot was last synced.",
        lambda: (
            None
            if sync.status.synced_at is None
            else max(0.0, sync.clock() - sync.status.synced_at)
        ),
    )
    metrics.gauge(
        "ehds_fhir_snapshot_resources", "Resources in the snapshot.", lambda: sync.status.resources
    )
    metrics.gauge(
        "ehds_fhir_sync_failures", "Failed syncs since start.", lambda: sync.status.failures
    )
    metrics.gauge(
        "ehds_fhir_sync_last_failed",
        "1 when the last sync failed (its code is in /ready).",
        lambda: 1.0 if sync.status.last_error else 0.0,
    )
    app.cleanup_ctx.append(_background)


async def _background(app: web.Application) -> AsyncIterator[None]:
    sync = app[FHIR_SYNC_KEY]
    task = asyncio.create_task(sync.run_forever(), name="ehds-fhir-sync")
    yield
    pending: list[asyncio.Future[Any]] = [task, *sync._background]
    for t in pending:
        t.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*pending, return_exceptions=True)


async def before_job(app: web.Application) -> None:
    """Call before a dry run or job: pulls changes first when configured (no-op for files)."""
    sync = app.get(FHIR_SYNC_KEY)
    if sync is not None:
        await sync.before_job()


__all__ = [
    "FhirSync",
    "SyncError",
    "before_job",
    "build_version",
    "install_fhir_sync",
    "snapshot_root",
]
