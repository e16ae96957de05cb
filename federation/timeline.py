"""Wall-clock marks of where a deployment round spends its time (counts of seconds only).

Why: a deployment round crosses four processes (ServerApp, SuperLink, SuperNode,
the site's executor); only a per-phase timeline says which wait is avoidable.
Marks are collected in a context variable so that the ClientApp code marks its
phases (permit check, feature load, training) without knowing who listens; with
nobody listening :func:`mark` does nothing. Timestamps are ``time.time()``
(comparable across processes of one machine); no data, ids or keys are recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_MARKS: ContextVar[dict[str, float] | None] = ContextVar("ehds_timeline", default=None)


def mark(phase: str) -> None:
    """Note that ``phase`` ended now (no-op unless :func:`recording` is active)."""
    marks = _MARKS.get()
    if marks is not None:
        marks[phase] = time.time()


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Collect the marks made in this context: phase -> end time."""
    marks: dict[str, float] = {}
    token = _MARKS.set(marks)
    try:
        yield marks
    finally:
        _MARKS.reset(token)


__all__ = ["mark", "recording"]
