"""Where the reader is: file, line, Bundle entry. Shared, mutable, one per stream.

Why a shared cursor instead of (resource, position) pairs: the resource
stream is ``Iterable[dict]`` everywhere (DEVELOPERS.md), and wrapping each
resource would cost a tuple per resource on the hot path. Readers update the
cursor just before they yield; whoever quarantines a resource reads it at
that moment, so a quarantine record names the file and line (or entry) of the
resource it rejects.
"""

from __future__ import annotations


class ReadPosition:
    """The file (``source``), NDJSON ``line`` (1-based) and Bundle ``entry`` (0-based) being read."""

    __slots__ = ("entry", "line", "source")

    def __init__(self) -> None:
        self.source: str | None = None
        self.line: int | None = None
        self.entry: int | None = None

    def at(self, source: str | None) -> None:
        """Start reading ``source`` (no line or entry yet)."""
        self.source = source
        self.line = None
        self.entry = None
