"""The audit log as the HTTP layer sees it: async, cached, one DB thread.

Database access in ``audit_chain`` is synchronous (SQLModel). Calling it on
the event loop would stall every other request, and sharing one SQLite
connection across threads is unsafe, so every call runs on one dedicated
worker thread. What cannot change is cached: an entry at an index and a proof
for a given tree size are immutable in an append-only log. The checkpoint is
cached until the service appends (the sink calls :meth:`invalidate`) or for at
most ``checkpoint_ttl`` seconds, which bounds staleness when another process
(e.g. the training coordinator) appends to the same database.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from audit_chain import merkle
from audit_chain.merkle import LeafRange, NodeId

T = TypeVar("T")
MAX_BATCH = 500


class AuditBackend(Protocol):
    """Synchronous reads the audit view needs; ``gateway.audit_backend`` adapts ``audit_chain``."""

    def tree_size(self) -> int: ...

    def checkpoint(self) -> dict[str, Any]: ...

    def entries(self, start: int, end: int) -> list[dict[str, Any]]: ...

    def inclusion(self, index: int, tree_size: int) -> list[bytes]: ...

    def consistency(self, first: int, second: int) -> list[bytes]: ...

    def leaf_hash(self, index: int) -> bytes: ...

    def get_nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]: ...


class _Found:
    """A ``NodeReader`` over hashes already in hand (the proof is then pure CPU)."""

    def __init__(self, nodes: Mapping[NodeId, bytes]) -> None:
        self.nodes = nodes

    def get_nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        return {i: self.nodes[i] for i in ids if i in self.nodes}


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


class ThreadedAuditView:
    """Implements ``gateway.http.audit_routes.AuditView`` over an :class:`AuditBackend`."""

    def __init__(
        self,
        backend: AuditBackend,
        *,
        checkpoint_ttl: float = 1.0,
        cache_size: int = 50_000,
        node_cache_size: int = 200_000,
    ) -> None:
        self.backend = backend
        self.checkpoint_ttl = checkpoint_ttl
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ehds-audit")
        self._cache = _Lru(cache_size)
        self._nodes = _Lru(node_cache_size)
        self._wanted: set[NodeId] = set()
        self._batch: asyncio.Task[dict[NodeId, bytes]] | None = None
        self._checkpoint: dict[str, Any] | None = None
        self._checkpoint_at = 0.0
        self._size: int | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._generation = 0
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}

    async def _run(self, key: Hashable | None, func: Callable[[], T]) -> T:
        """Run ``func`` on the DB thread; concurrent identical calls share one run."""
        if key is not None:
            pending = self._inflight.get(key)
            if pending is not None:
                return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, func)
        if key is None:
            return await future
        self._inflight[key] = future
        try:
            return await asyncio.shield(future)
        finally:
            self._inflight.pop(key, None)

    def invalidate(self) -> None:
        """Called after this process appended: the next read fetches a fresh checkpoint."""
        self._generation += 1
        self._checkpoint = None
        self._size = None

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def cached_size(self) -> int | None:
        """The size known without a database call (for metrics scrapes)."""
        return self._size

    def run_sync(self, func: Callable[[], T]) -> asyncio.Future[T]:
        """Run any other database call (e.g. an append) on the same thread."""
        return asyncio.get_running_loop().run_in_executor(self._executor, func)

    async def tree_size(self) -> int:
        return int((await self.checkpoint())["size"])

    async def checkpoint(self) -> dict[str, Any]:
        """The newest checkpoint, at most about ``checkpoint_ttl`` seconds old.

        Stale-while-revalidate: an expired checkpoint is still a valid signed
        tree head, so it is served while one refresh runs in the background;
        only a missing one (start-up, or after this process appended) is
        waited for, so a client always reads its own writes.
        """
        while self._checkpoint is None:
            await self._refresh_checkpoint()
        if time.monotonic() - self._checkpoint_at > self.checkpoint_ttl and self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(self._background_refresh())
        return self._checkpoint

    async def _refresh_checkpoint(self) -> None:
        # Keyed by generation: a read queued before this process's last append
        # (the DB thread is serial) must not satisfy a reader that came after it.
        generation = self._generation
        cp = await self._run(("checkpoint", generation), self.backend.checkpoint)
        if generation == self._generation:
            self._checkpoint, self._checkpoint_at = cp, time.monotonic()
            self._size = int(cp["size"])

    async def _background_refresh(self) -> None:
        try:
            await self._refresh_checkpoint()
        except Exception:  # the next request retries; the old checkpoint stays valid meanwhile
            self._checkpoint_at = time.monotonic()
        finally:
            self._refresh = None

    async def entries(self, start: int, end: int) -> list[dict[str, Any]]:
        missing = [i for i in range(start, end) if self._cache.get(("entry", i)) is None]
        if missing:
            lo, hi = missing[0], missing[-1] + 1
            fetched = await self._run(("entries", lo, hi), lambda: self.backend.entries(lo, hi))
            for entry in fetched:
                self._cache.put(("entry", int(entry["index"])), entry)
        out = []
        for i in range(start, end):
            entry = self._cache.get(("entry", i))
            if entry is None:  # evicted between fetch and read: fetch directly
                (entry,) = await self._run(None, lambda i=i: self.backend.entries(i, i + 1))  # type: ignore[misc]
            out.append(entry)
        return out

    async def _resolve(self, ranges: list[LeafRange]) -> list[bytes]:
        """Fold proof ranges from cached subtree hashes, reading only the missing ones.

        A stored complete subtree never changes, so a hash read once is valid
        for every later proof, and the upper levels are shared by all proofs:
        after warm-up most proofs need no database call at all.
        """
        wanted = {node for a, b in ranges for node in merkle.range_node_ids(a, b)}
        found: dict[NodeId, bytes] = {}
        missing: list[NodeId] = []
        for node in wanted:
            value = self._nodes.get(node)
            if value is None:
                missing.append(node)
            else:
                found[node] = value
        if missing:
            fetched = await self._fetch_nodes(missing)
            found.update((node, fetched[node]) for node in missing if node in fetched)
        return merkle.resolve_ranges(ranges, _Found(found))

    async def _fetch_nodes(
        self, ids: list[NodeId], *, retry: bool = True
    ) -> Mapping[NodeId, bytes]:
        """Coalesce the misses of all concurrent requests into one database read per batch.

        Under load many requests miss at once; one ``IN (...)`` query for all of
        them costs about what one query for a single node does.
        """
        self._wanted.update(ids)
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_task(self._read_batch())
        batch = self._batch
        result = await asyncio.shield(batch)
        late = [n for n in ids if n not in result]
        if not late or not retry:
            return result  # a node still missing is a storage error, raised by resolve_ranges
        # joined a batch that had already taken its ids: one more round for the rest
        return {**result, **await self._fetch_nodes(late, retry=False)}

    def _get_nodes(self, ids: list[NodeId]) -> dict[NodeId, bytes]:
        return dict(self.backend.get_nodes(ids))

    async def _read_batch(self) -> dict[NodeId, bytes]:
        await asyncio.sleep(0)  # let every request of this loop turn add its misses
        ids, self._wanted = list(self._wanted), set()
        self._batch = None
        out: dict[NodeId, bytes] = {}
        for i in range(0, len(ids), MAX_BATCH):
            chunk = ids[i : i + MAX_BATCH]
            fetched = await self._run(None, functools.partial(self._get_nodes, chunk))
            out.update(fetched)
        for node, value in out.items():
            self._nodes.put(node, value)
        return out

    async def _proof(self, key: Hashable, ranges: Callable[[], list[LeafRange]]) -> list[bytes]:
        proof = self._cache.get(key)
        if proof is None:
            proof = await self._resolve(ranges())
            self._cache.put(key, proof)
        return list(proof)

    async def inclusion(self, index: int, tree_size: int) -> list[bytes]:
        return await self._proof(
            ("incl", index, tree_size), lambda: merkle.inclusion_ranges(index, tree_size)
        )

    async def consistency(self, first: int, second: int) -> list[bytes]:
        return await self._proof(
            ("cons", first, second), lambda: merkle.consistency_ranges(first, second)
        )

    async def inclusion_with_leaf(self, index: int, tree_size: int) -> tuple[bytes, list[bytes]]:
        """The leaf hash and its audit path, resolved together (one database round trip at most)."""
        key = ("incl+leaf", index, tree_size)
        hit = self._cache.get(key)
        if hit is None:
            ranges = [(index, index + 1), *merkle.inclusion_ranges(index, tree_size)]
            leaf, *path = await self._resolve(ranges)
            hit = (leaf, path)
            self._cache.put(key, hit)
        return hit[0], list(hit[1])

    async def warm(self) -> int:
        """Preload stored subtree hashes, top levels first, until the node cache is nearly full.

        Run in the background at start-up: afterwards most proofs are folded
        from memory without touching the database.
        """
        size = await self.tree_size()
        budget = int(self._nodes.size * 0.9)
        loaded = 0
        level = max(size.bit_length() - 1, 0)
        while level >= 0 and loaded < budget:
            count = size >> level
            ids = [(level, i) for i in range(min(count, budget - loaded))]
            for i in range(0, len(ids), MAX_BATCH):
                chunk = ids[i : i + MAX_BATCH]
                fetched = await self._run(None, functools.partial(self._get_nodes, chunk))
                for node, value in fetched.items():
                    self._nodes.put(node, value)
                loaded += len(fetched)
            level -= 1
        return loaded

    async def leaf_hash(self, index: int) -> bytes:
        (leaf,) = await self._resolve([(index, index + 1)])
        return leaf


__all__ = ["AuditBackend", "ThreadedAuditView"]
