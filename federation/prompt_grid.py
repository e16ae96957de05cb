"""A Grid that hands replies to the coordinator as soon as they are there.

Why: Flower 1.42's deployment grid (``GrpcGrid.send_and_receive``) sleeps 3 s
between two pulls of replies, so every message exchange of a deployment round
pays up to 3 s after the last site has answered. This wrapper keeps Flower's
message path as it is - the same ``push_messages`` and ``pull_messages`` calls
to the SuperLink, the same authentication, nothing of Flower patched - and only
polls for replies more often (``interval``, default 0.2 s: a light local call).
It also notes when each exchange started, was pushed and was complete, for the
bench's per-phase timeline (:mod:`federation.timeline`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.supercore.run import Run


class PromptGrid(Grid):
    """Delegates to ``inner``; ``send_and_receive`` polls replies every ``interval`` seconds."""

    def __init__(self, inner: Grid, interval: float = 0.2) -> None:
        self.inner = inner
        self.interval = interval
        #: One entry per exchange: ``started``, ``pushed``, ``received`` (``time.time()``).
        self.exchanges: list[dict[str, float]] = []

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        started = time.time()
        pending = set(self.inner.push_messages(messages))
        pushed = time.time()
        if not pending:
            return []  # nothing sent (e.g. no evaluation this round): no exchange
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            got = list(self.inner.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.interval)
        self.exchanges.append({"started": started, "pushed": pushed, "received": time.time()})
        return replies


__all__ = ["PromptGrid"]
