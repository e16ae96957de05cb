"""Run an application until SIGTERM/SIGINT, then shut down gracefully.

On a signal the listening socket closes first (no new connections), in-flight
requests get ``shutdown_timeout`` seconds to finish, then cleanup hooks run
(SuperNode stopped by PID, databases closed). A second signal does not
interrupt the cleanup half-way.

Hooks registered with :func:`on_bound` run only once the socket is bound: a
child such as the SuperNode must not start for a gateway that cannot listen
(port taken), since nothing would then stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway.errors import PortInUseError

LOG = logging.getLogger("ehds.server")
BoundHook = Callable[[], Awaitable[None]]
BOUND_HOOKS_KEY = web.AppKey("ehds_bound_hooks", list)


def on_bound(app: web.Application, hook: BoundHook) -> None:
    """Run ``hook`` after the listening socket is bound (before serving starts)."""
    app.setdefault(BOUND_HOOKS_KEY, []).append(hook)


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    on_ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"cannot listen on {host}:{port}: the address is already in use "
                "(another service, or an earlier instance still running)"
            ) from None
        raise
    bound_port = port
    sockets = getattr(site._server, "sockets", None)  # learn the real port when 0 was asked
    if sockets:
        bound_port = int(sockets[0].getsockname()[1])
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    LOG.info(orjson.dumps({"event": "server.started", "host": host, "port": bound_port}).decode())
    try:
        for hook in app.get(BOUND_HOOKS_KEY, []):
            await hook()
        if on_ready is not None:
            on_ready(host, bound_port)
        await stop.wait()
    finally:
        LOG.info(
            orjson.dumps({"event": "server.stopping", "grace_seconds": shutdown_timeout}).decode()
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await runner.cleanup()
        LOG.info(orjson.dumps({"event": "server.stopped"}).decode())


__all__ = ["BOUND_HOOKS_KEY", "on_bound", "serve"]
