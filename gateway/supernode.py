"""The Flower SuperNode next to a hospital gateway: supervise it as a child, or report on one.

``mode = "run"`` supervises the configured command (e.g. ``flower-supernode
--superlink 10.0.0.5:9092 ...``) with :class:`gateway.supervisor.Supervised`:
started only once the gateway has bound its port (a gateway that cannot start
leaves nothing behind), its output in the gateway's log, restarted with backoff
when it dies, gone when the gateway goes (even by SIGKILL). ``mode = "connect"``
only reports whether the SuperLink's port answers. More children (a site-side
helper started next to the SuperNode) can be added with :meth:`SuperNode.add_child`.
Status never includes a command line (it may carry key paths).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from gateway.config import FlowerSettings
from gateway.errors import UnavailableError
from gateway.supervisor import Supervised

SUPERNODE = "supernode"


class SuperNode:
    def __init__(
        self,
        settings: FlowerSettings,
        *,
        stop_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        self.settings = settings
        self.stop_timeout = stop_timeout
        self.children: dict[str, Supervised] = {}
        if settings.mode == "run":
            self.add_child(
                SUPERNODE,
                settings.command,
                backoff_initial=backoff_initial,
                backoff_max=backoff_max,
            )

    def add_child(self, name: str, command: Sequence[str], **options: Any) -> Supervised:
        """Supervise one more command next to the SuperNode (started and stopped with it)."""
        options.setdefault("stop_timeout", self.stop_timeout)
        child = Supervised(name, command, **options)
        self.children[name] = child
        return child

    @property
    def supervised(self) -> Supervised | None:
        return self.children.get(SUPERNODE)

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        child = self.supervised
        return child.process if child is not None else None

    async def start(self) -> None:
        for child in self.children.values():
            await child.start()

    async def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            await child.stop()

    async def _superlink_reachable(self) -> bool:
        host, _, port = self.settings.superlink.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout=1.0
            )
        except (OSError, TimeoutError, ValueError):
            return False
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return True

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.settings.mode, "superlink": self.settings.superlink}
        if self.settings.mode == "off":
            return out
        supernode = self.supervised
        if supernode is not None:
            out.update(supernode.status())
        others = {n: c.status() for n, c in self.children.items() if n != SUPERNODE}
        if others:
            out["children"] = others
        out["superlink_reachable"] = await self._superlink_reachable()
        return out

    async def check_ready(self) -> None:
        for name, child in self.children.items():
            if not child.running:
                raise UnavailableError(f"the {name} process is not running", code="SUPERNODE_DOWN")


__all__ = ["SuperNode"]
