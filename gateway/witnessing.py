"""A log asks its witnesses for cosignatures, in the background, batched.

:class:`Witnessing` listens to its :class:`~audit_chain.log.AuditLog`'s new
checkpoints (``log.on_checkpoint``) and only sets a flag: the append path never
waits on the network. A worker thread with its own asyncio loop then sends the
*newest* checkpoint to every witness (C2SP tlog-witness ``add-checkpoint``, with
a consistency proof from the size the witness holds), so a burst of appends
costs one request per witness. Cosignatures are verified and stored next to
the log (``audit_cosignature``); a 409 teaches the size a witness holds (after
a restart) and the request is retried once from there.

    witnessing = Witnessing(log, [WitnessEndpoint.parse("<vkey> http://127.0.0.1:8441/witness")])
    witnessing.start()
    ...; witnessing.flush(timeout=10)     # tests, the demo: wait until all cosigned
    witnessing.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from audit_chain.checkpoint import Checkpoint
from audit_chain.errors import AuditError
from audit_chain.log import AuditLog
from audit_chain.note import NoteVerifier, parse_vkey
from audit_chain.witness import SIZE_CONTENT_TYPE, add_checkpoint_request, read_cosignature

LOG = logging.getLogger("ehds.witnessing")


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the log asks: its verifier key and its submission prefix (``.../witness``)."""

    verifier: NoteVerifier
    url: str

    @property
    def name(self) -> str:
        return self.verifier.name

    @classmethod
    def parse(cls, text: str) -> WitnessEndpoint:
        """``"<vkey> <url>"``."""
        parts = text.split()
        if len(parts) != 2 or not parts[1].startswith(("http://", "https://")):
            raise ValueError("a witness is '<vkey> <http(s) submission prefix>'")
        return cls(parse_vkey(parts[0]), parts[1].rstrip("/"))


@dataclass
class WitnessStatus:
    size: int = 0  # newest size it cosigned for us
    error: str | None = None
    cosignatures: int = 0


@dataclass
class _Shared:
    wanted: int = 0  # newest checkpoint size the log told us about
    done: int = -1  # newest size a round finished for
    status: dict[str, WitnessStatus] = field(default_factory=dict)


class Witnessing:
    """Background cosignature collection for one log (see the module docstring)."""

    def __init__(
        self,
        log: AuditLog,
        witnesses: Sequence[WitnessEndpoint],
        *,
        timeout: float = 10.0,
        min_interval: float = 0.25,
    ) -> None:
        self.log = log
        self.min_interval = min_interval
        self.witnesses = list(witnesses)
        self.timeout = timeout
        self._cond = threading.Condition()
        self._state = _Shared(status={w.name: WitnessStatus() for w in witnesses})
        for size, witness, _ts, _line in log.store.cosignatures(log.log_id):
            if witness in self._state.status:
                st = self._state.status[witness]
                st.size = max(st.size, size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        log.on_checkpoint(self.notify)

    # ------------------------------------------------------------ control (any thread)

    def start(self) -> Witnessing:
        if self._thread is None and self.witnesses:
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._main, args=(ready,), name=f"witnessing-{self.log.log_id}", daemon=True
            )
            self._thread.start()
            ready.wait()
            self.notify(self.log.size())
        return self

    def notify(self, size: int) -> None:
        """A new checkpoint exists (called after the append committed; never blocks)."""
        with self._cond:
            self._state.wanted = max(self._state.wanted, size)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not self._closed:
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(wake.set)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until a round covered the newest checkpoint; True if every witness cosigned it."""
        with self._cond:
            self._cond.wait_for(lambda: self._state.done >= self._state.wanted, timeout=timeout)
            wanted = self._state.wanted
            return self._state.done >= wanted and all(
                s.size >= wanted for s in self._state.status.values()
            )

    def status(self) -> dict[str, WitnessStatus]:
        with self._cond:
            return {
                k: WitnessStatus(v.size, v.error, v.cosignatures)
                for k, v in self._state.status.items()
            }

    def close(self) -> None:
        self._closed = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
            self._thread = None

    # ------------------------------------------------------------ worker thread

    def _main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._run(ready))
        finally:
            loop.close()

    async def _run(self, ready: threading.Event) -> None:
        self._wake = asyncio.Event()
        ready.set()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                if self._closed:
                    break
                with self._cond:
                    wanted = self._state.wanted
                try:
                    cp = await asyncio.to_thread(self.log.checkpoint)
                except AuditError as exc:  # e.g. head and checkpoint disagree: never witness that
                    LOG.error("cannot read the log's checkpoint: %s", exc.code)
                    self._finish(wanted)
                    continue
                got = await asyncio.gather(*(self._submit(session, w, cp) for w in self.witnesses))
                rows = [r for r in got if r is not None]
                if rows:  # one write per round: the appender shares the database lock
                    try:
                        await asyncio.to_thread(
                            self.log.store.add_cosignatures, self.log.log_id, cp.size, rows
                        )
                    except AuditError as exc:
                        LOG.error("cannot store cosignatures: %s", exc.code)
                    for name, _, _ in rows:
                        self._set(name, size=cp.size)
                self._finish(max(wanted, cp.size))
                await asyncio.sleep(self.min_interval)  # let appends accumulate: batched rounds

    def _finish(self, size: int) -> None:
        with self._cond:
            self._state.done = max(self._state.done, size)
            self._cond.notify_all()

    async def _submit(
        self, session: aiohttp.ClientSession, witness: WitnessEndpoint, cp: Checkpoint
    ) -> tuple[str, int, str] | None:
        """One witness's verified cosignature of ``cp`` as a row to store, or None."""
        status = self._state.status[witness.name]
        old = status.size
        for _ in range(2):  # a 409 tells us what the witness holds: one retry from there
            if old > cp.size:
                self._set(witness.name, error=f"witness holds {old}, beyond this log's {cp.size}")
                return None
            if old == cp.size and status.error is None and status.cosignatures:
                return None
            try:
                proof = (
                    await asyncio.to_thread(self.log.consistency_proof, old, cp.size)
                    if 0 < old < cp.size
                    else []
                )
                body = add_checkpoint_request(old, proof, cp.note)
                async with session.post(
                    f"{witness.url}/add-checkpoint",
                    data=body,
                    headers={"Content-Type": "text/plain"},
                ) as resp:
                    text = await resp.text()
                    if resp.status == 409 and resp.content_type == SIZE_CONTENT_TYPE:
                        known = text.strip()
                        if not known.isdigit():
                            self._set(witness.name, error="409 without a size")
                            return None
                        old = int(known)
                        continue
                    if resp.status != 200:
                        self._set(witness.name, error=f"HTTP {resp.status}")
                        return None
                cosig = read_cosignature(cp.body, text, witness.verifier)
                return (cosig.witness, cosig.timestamp, cosig.line)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self._set(witness.name, error=f"unreachable: {type(exc).__name__}")
                return None
            except AuditError as exc:
                self._set(witness.name, error=f"[{exc.code}] {exc}")
                return None
        self._set(witness.name, error="witness keeps answering 409")
        return None

    def _set(self, name: str, *, size: int | None = None, error: str | None = None) -> None:
        with self._cond:
            st = self._state.status[name]
            if size is not None:
                st.size = size
                st.cosignatures += 1
                st.error = None
            else:
                st.error = error
                LOG.warning("witness %s: %s", name, error)


__all__ = ["WitnessEndpoint", "WitnessStatus", "Witnessing"]
