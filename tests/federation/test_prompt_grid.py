"""PromptGrid: Flower's push/pull calls, polled often, every reply delivered.

The inner grid is a stand-in for the SuperLink (replies become visible only
after a few pulls, as when sites answer late); the real SuperLink path runs in
the deployment bench and the deployment e2e test.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import uuid4

from flwr.app import Message, RecordDict

from federation.client_app import SimulationSites, make_client_app
from federation.prompt_grid import PromptGrid
from federation.server_app import run_coordinator
from federation.testing.inprocess import InProcessGrid
from tests.federation.conftest import SITES, World


class LateGrid(InProcessGrid):
    """Answers each message on push, but shows a reply only on the third pull after it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.waiting: dict[str, tuple[Message, int]] = {}
        self.pulls = 0

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            (reply,) = super().send_and_receive([msg])
            msg_id = str(uuid4())
            reply.metadata.__dict__["_reply_to_message_id"] = msg_id
            self.waiting[msg_id] = (reply, 0)
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self.pulls += 1
        out = []
        for msg_id in list(message_ids):
            reply, seen = self.waiting[msg_id]
            if seen >= 2:
                out.append(reply)
                del self.waiting[msg_id]
            else:
                self.waiting[msg_id] = (reply, seen + 1)
        return out


def test_prompt_grid_delivers_every_reply_and_times_each_exchange(world: World) -> None:
    job = world.job(rounds=2)
    inner = LateGrid(make_client_app(SimulationSites(job.sites)), len(job.sites))
    grid = PromptGrid(inner, interval=0.01)
    result = run_coordinator(grid, job, engine="inprocess")
    assert result.status == "completed", result.error_code
    assert [r.sites for r in result.rounds] == [list(SITES), list(SITES)]
    assert inner.pulls == 3 * 3  # two train exchanges and one evaluation, three pulls each
    assert len(grid.exchanges) == 3
    for report in result.rounds:
        (exchange,) = report.exchanges
        assert exchange["started"] <= exchange["pushed"] <= exchange["received"]


def test_prompt_grid_returns_what_arrived_by_the_timeout(world: World) -> None:
    job = world.job(rounds=1)
    inner = LateGrid(make_client_app(SimulationSites(job.sites)), len(job.sites))
    grid = PromptGrid(inner, interval=0.01)
    msgs = [
        Message(content=RecordDict(), message_type="train", dst_node_id=n)
        for n in inner.get_node_ids()
    ]
    assert list(grid.send_and_receive(msgs, timeout=0.0)) == []
