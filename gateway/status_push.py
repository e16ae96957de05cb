"""The HDAB side of travelling status lists: conditional GET and push on publication.

``GET /status-list`` answers with an ``ETag`` (version and token hash) and 304
to a matching ``If-None-Match``, so gateways can poll often for the price of a
header. After every issue, amendment and revocation the service calls
:func:`notify`; a background task then pushes the newest signed list to every
configured hospital gateway (``POST /status-lists``, the request signed with
the HDAB's key). A failed push is logged and counted, never retried in a
loop: the gateway's poll is the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from jwcrypto import jwk

from gateway.http.client import ServiceClient
from gateway.http.routing import json_response

LOG = logging.getLogger("ehds.hdab")
PUSHER_KEY = web.AppKey("ehds_status_pusher", object)


def etag_of(token: str) -> str:
    return '"' + hashlib.sha256(token.encode()).hexdigest()[:32] + '"'


def status_list_response(request: web.Request, token: str) -> web.Response:
    """The token as JSON with its ETag; 304 when the caller already holds it."""
    etag = etag_of(token)
    headers = {"Cache-Control": "no-cache", "ETag": etag}
    match = request.headers.get("If-None-Match", "")
    if etag in [m.strip() for m in match.split(",")]:
        return web.Response(status=304, headers=headers)
    return json_response({"token": token}, headers=headers)


@dataclass
class StatusPusher:
    """Pushes the newest list to ``targets`` whenever :meth:`notify` is called."""

    targets: tuple[str, ...]
    key: Callable[[], jwk.JWK]
    latest: Callable[[], str | None]
    timeout: float = 5.0
    pushed: int = 0
    failed: int = 0
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self._event.set()

    async def push_once(self) -> None:
        token = await asyncio.get_running_loop().run_in_executor(None, self.latest)
        if token is None:
            return
        await asyncio.gather(*(self._push(url, token) for url in self.targets))

    async def _push(self, url: str, token: str) -> None:
        try:
            async with ServiceClient(url, key=self.key(), timeout=self.timeout) as client:
                await client.post("/status-lists", {"token": token})
            self.pushed += 1
        except Exception as exc:  # the gateway's poll catches up; never block the HDAB
            self.failed += 1
            LOG.warning(
                orjson.dumps(
                    {"event": "statuslist.push_failed", "error": type(exc).__name__}
                ).decode()
            )

    async def run(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            await self.push_once()


def notify(app: web.Application) -> None:
    """Call after anything that published a new list (issue, amend, revoke, refresh)."""
    pusher = app.get(PUSHER_KEY)
    if isinstance(pusher, StatusPusher):
        pusher.notify()


async def pusher_lifecycle(app: web.Application) -> AsyncIterator[None]:
    pusher = app.get(PUSHER_KEY)
    task = None
    if isinstance(pusher, StatusPusher) and pusher.targets:
        pusher._event = asyncio.Event()  # bound to the running loop
        task = asyncio.get_running_loop().create_task(pusher.run())
        pusher.notify()  # at start too: gateways get the current list at once
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def install_pusher(
    app: web.Application,
    targets: tuple[str, ...],
    key: Callable[[], jwk.JWK],
    latest: Callable[[], str | None],
) -> None:
    app[PUSHER_KEY] = StatusPusher(targets, key, latest)
    app.cleanup_ctx.append(pusher_lifecycle)


__all__ = [
    "PUSHER_KEY",
    "StatusPusher",
    "etag_of",
    "install_pusher",
    "notify",
    "status_list_response",
]
