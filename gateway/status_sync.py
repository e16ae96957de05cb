"""Status lists that travel: the hospital gateway keeps every HDAB's signed list current.

A revocation only protects anything once the data holder knows of it. The
gateway therefore

* polls each configured HDAB's ``GET /status-list`` on a timer with a
  conditional request (``If-None-Match``: an unchanged list costs one 304),
* accepts a signed push from the HDAB (``POST /status-lists``) so a revocation
  reaches running sites in seconds rather than at the next poll,
* verifies every list (signature by a trusted key of that HDAB, never a lower
  version than one accepted before, persisted in the guard state so a restart
  cannot un-revoke) and writes the accepted token to ``<folder>/<hdab>.jws``,
  the folder the site's ClientApp guard reads.

``/ready`` fails while any configured HDAB's list is missing or older than the
max age (with that reason's code), and ``/metrics`` shows each list's version
and age. Nothing here decides access: :class:`permits.PermitGuard` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from gateway.http.metrics import Gauge, Metrics
from gateway.key_sync import KeySync
from permits.errors import VerificationError
from permits.reasons import ReasonCode
from permits.statuslist import StatusList, StatusListStore

LOG = logging.getLogger("ehds.status")
SYNC_KEY = web.AppKey("ehds_status_sync", object)


@dataclass
class IssuerState:
    """What the gateway knows about one HDAB's list endpoint (no list content)."""

    url: str
    etag: str | None = None
    polls: int = 0
    not_modified: int = 0
    failures: int = 0
    last_error: str | None = None
    pushes: int = 0


@dataclass
class StatusSync:
    """Keeps ``store`` current for every HDAB in ``issuers`` (id -> base URL)."""

    store: StatusListStore
    folder: Path
    issuers: Mapping[str, str] = field(default_factory=dict)
    poll_seconds: float = 30.0
    timeout: float = 10.0
    on_accept: list[Callable[[StatusList], None]] = field(default_factory=list)
    state: dict[str, IssuerState] = field(default_factory=dict)
    #: HDAB -> reason its list on disk was refused at start (e.g. status_list_rollback);
    #: every check fails with it until a valid list of that HDAB is accepted
    refused: dict[str, str] = field(default_factory=dict)
    #: fetches and pins the HDABs' keys (rotation, the status key); optional
    keys: KeySync | None = None
    _keys_fetched_at: float = -1e9

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for hdab, url in self.issuers.items():
            self.state[hdab] = IssuerState(url.rstrip("/"))

    # -- accepting a list (poll, push or the folder at start) -------------------------
    def accept(self, token: str) -> StatusList:
        """Verify and hold a list; persist the token for the ClientApp. Raises on refusal."""
        status = self.store.update(token)
        self.refused.pop(status.iss, None)
        self._write(status.iss, token.strip())
        for hook in self.on_accept:
            hook(status)
        return status

    def load_folder(self) -> dict[str, str]:
        """At start: the lists kept before a restart; a refused one keeps its reason.

        A list older than the version floor persisted in the guard state (someone
        put back an old file) is refused with ``status_list_rollback``, and every
        check fails with that reason until a newer list of that HDAB arrives.
        """
        for path in sorted(self.folder.glob("*.jws")):
            try:
                self.store.update(path.read_text().strip())
            except (OSError, VerificationError) as exc:
                reason = getattr(exc, "reason", ReasonCode.STATUS_LIST_INVALID)
                self.refused[_issuer_hint(path)] = reason.value
        return dict(self.refused)

    def check_refused(self) -> None:
        """Raise with the reason a list was refused at start, while it stands."""
        for reason in self.refused.values():
            raise VerificationError(ReasonCode(reason), "status list refused at start")

    def _write(self, hdab: str, token: str) -> None:
        current = self.store.token(hdab)
        if current != token:  # only the list the store holds is ever on disk
            return
        target = self.folder / f"{hdab}.jws"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(token)
        os.replace(tmp, target)  # atomic: a ClientApp never reads half a list

    # -- polling ----------------------------------------------------------------------
    async def poll_once(self, session: aiohttp.ClientSession, hdab: str) -> bool:
        """One conditional GET; True when a new list was accepted."""
        st = self.state[hdab]
        st.polls += 1
        headers = {"Accept": "application/json"}
        if st.etag is not None:
            headers["If-None-Match"] = st.etag
        try:
            async with session.get(f"{st.url}/status-list", headers=headers) as resp:
                if resp.status == 304:
                    st.not_modified += 1
                    st.last_error = None
                    return False
                if resp.status != 200:
                    raise _PollError(f"http_{resp.status}")
                body = orjson.loads(await resp.read())
                token = body.get("token") if isinstance(body, dict) else None
                if not isinstance(token, str):
                    raise _PollError("no_token")
                etag = resp.headers.get("ETag")
            try:
                status = self.accept(token)
            except VerificationError as exc:  # maybe signed by a key not fetched yet
                if exc.reason is not ReasonCode.KID_UNKNOWN or self.keys is None:
                    raise
                await self.keys.fetch(session, hdab)
                status = self.accept(token)
            if status.iss != hdab:
                raise _PollError("issuer_mismatch")
            st.etag, st.last_error = etag, None
            return True
        except VerificationError as exc:
            st.failures += 1
            st.last_error = exc.reason.value
        except (_PollError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            st.failures += 1
            st.last_error = exc.reason if isinstance(exc, _PollError) else "unreachable"
        LOG.warning(
            orjson.dumps(
                {"event": "statuslist.poll_failed", "hdab": hdab, "reason": st.last_error}
            ).decode()
        )
        return False

    async def refresh_keys(self, *, min_interval: float = 0.0) -> None:
        """Fetch every HDAB's signed JWKS now (at most once per ``min_interval`` seconds)."""
        if self.keys is None:
            return
        now = time.monotonic()
        if now - self._keys_fetched_at < min_interval:
            return
        self._keys_fetched_at = now
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await self.keys.fetch_all(session)

    async def poll_all(self, session: aiohttp.ClientSession) -> None:
        if self.keys is not None:  # keys first: a rotated or new status key is pinned
            await self.keys.fetch_all(session)
        await asyncio.gather(*(self.poll_once(session, h) for h in self.state))

    async def run(self) -> None:
        """Poll every HDAB now and then every ``poll_seconds`` until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self.poll_all(session)
                await asyncio.sleep(self.poll_seconds)

    # -- readiness and metrics ----------------------------------------------------------
    def check(self, now: float | None = None) -> None:
        """Raise with the precise reason unless every configured HDAB's list is held and fresh."""
        self.check_refused()
        now = time.time() if now is None else now
        held = {i.hdab: i for i in self.store.info(now)}
        for hdab in self.state:
            info = held.get(hdab)
            if info is None:
                raise VerificationError(ReasonCode.STATUS_LIST_MISSING, f"no list from {hdab}")
            if not info.fresh:
                raise VerificationError(ReasonCode.STATUS_LIST_STALE, f"list of {hdab} too old")

    def snapshot(self) -> list[dict[str, object]]:
        """Per HDAB: version, age, freshness and poll counters (ids and counts only)."""
        now = time.time()
        held = {i.hdab: i for i in self.store.info(now)}
        out: list[dict[str, object]] = []
        for hdab in sorted(set(held) | set(self.state)):
            info, st = held.get(hdab), self.state.get(hdab)
            out.append(
                {
                    "hdab": hdab,
                    "version": info.version if info else None,
                    "age_seconds": round(info.age, 3) if info else None,
                    "fresh": bool(info and info.fresh),
                    "polls": st.polls if st else 0,
                    "not_modified": st.not_modified if st else 0,
                    "failures": st.failures if st else 0,
                    "last_error": st.last_error if st else None,
                }
            )
        return out


def _issuer_hint(path: Path) -> str:
    """The HDAB a refused file belongs to: its name (files are written as ``<hdab>.jws``)."""
    return path.stem


class _PollError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StatusListGauge(Gauge):
    """``ehds_status_list_{version,age_seconds}{hdab=...}``, read at scrape time."""

    def __init__(self, name: str, help: str, rows: Callable[[], Iterable[tuple[str, float]]]):
        super().__init__(name, help, lambda: None)
        self.rows = rows

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        try:
            rows = list(self.rows())
        except Exception:  # a scrape never fails on this
            rows = []
        for hdab, value in rows:
            yield f'{self.name}{{hdab="{hdab}"}} {value:g}'


def register_metrics(metrics: Metrics, sync: StatusSync) -> None:
    def rows(field_name: str) -> Callable[[], list[tuple[str, float]]]:
        return lambda: [(str(i.hdab), float(getattr(i, field_name))) for i in sync.store.info()]

    metrics.gauges.append(
        StatusListGauge("ehds_status_list_version", "Version of each HDAB's list", rows("version"))
    )
    metrics.gauges.append(
        StatusListGauge(
            "ehds_status_list_age_seconds", "Seconds since each list was signed", rows("age")
        )
    )


async def sync_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: poll in the background while the service runs."""
    sync = app[SYNC_KEY]
    assert isinstance(sync, StatusSync)
    task = asyncio.get_running_loop().create_task(sync.run()) if sync.state else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = [
    "SYNC_KEY",
    "IssuerState",
    "StatusListGauge",
    "StatusSync",
    "register_metrics",
    "sync_lifecycle",
]
