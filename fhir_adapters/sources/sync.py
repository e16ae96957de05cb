"""Async resource stream -> plain ``Iterator`` for synchronous consumers.

Views and feature extraction consume ``Iterable[dict]``; the HTTP sources are
async. :func:`iterate_sync` runs the async producer on its own event loop in a
worker thread and hands items over through a *bounded* queue (in batches, so
the hand-off costs little), so memory stays bounded and a consumer that stops
early stops the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_BATCH = 256


class _Done:
    pass


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def iterate_sync(factory: Callable[[], AsyncIterator[T]], *, max_batches: int = 8) -> Iterator[T]:
    """Iterate ``factory()`` (an async iterator) from synchronous code.

    Errors raised by the producer are re-raised in the consumer. Closing the
    returned generator early cancels the producer.
    """
    channel: queue.Queue[list[T] | _Done | _Failed] = queue.Queue(maxsize=max_batches)
    stop = threading.Event()

    def put(item: list[T] | _Done | _Failed) -> bool:
        while not stop.is_set():
            try:
                channel.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    async def produce() -> None:
        batch: list[T] = []
        agen = factory()
        try:
            async for item in agen:
                batch.append(item)
                if len(batch) >= _BATCH:
                    try:
                        channel.put_nowait(batch)
                    except queue.Full:
                        if not await asyncio.to_thread(put, batch):
                            return
                    batch = []
                if stop.is_set():
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()
        if batch:
            await asyncio.to_thread(put, batch)

    def run() -> None:
        try:
            asyncio.run(produce())
        except BaseException as exc:  # handed to the consumer
            put(_Failed(exc))
            return
        put(_Done())

    worker = threading.Thread(target=run, name="fhir-source", daemon=True)
    worker.start()
    try:
        while True:
            item = channel.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield from item
    finally:
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                channel.get(timeout=0.05)
        worker.join()
