"""Split a byte stream (maybe gzip) into NDJSON lines, counting bad ones.

Pure and incremental: feed chunks as they arrive from the network, get whole
lines back. Lines longer than ``max_line_bytes`` are dropped and counted
(memory stays bounded even against a server that never sends a newline).
Used by the ``$export`` downloader; the file reader of ``fhir_adapters``
handles NDJSON already on disk.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_MAX_LINE = 64 * 1024 * 1024


@dataclass
class LineStats:
    resources: int = 0
    bad_lines: int = 0
    oversized_lines: int = 0
    bytes_in: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class NdjsonSplitter:
    """Incremental NDJSON splitter with transparent gzip (detected by magic bytes)."""

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._inflate: Any = None
        self._started = False
        self._skipping = False
        self.stats = LineStats()

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """Yield the complete, non-empty lines ``chunk`` finishes (without the newline)."""
        self.stats.bytes_in += len(chunk)
        if not self._started and chunk:
            self._started = True
            if chunk[:2] == GZIP_MAGIC:
                self._inflate = zlib.decompressobj(wbits=31)
        if self._inflate is not None:
            try:
                chunk = self._inflate.decompress(chunk)
            except zlib.error:
                self._inflate = None
                self.stats.bad_lines += 1
                self._skipping = True
                return
        buf = self._buffer
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = bytes(buf[start:nl])
            start = nl + 1
            if self._skipping:
                self._skipping = False
                continue
            line = line.strip()
            if line:
                yield line
        del buf[:start]
        if len(buf) > self.max_line_bytes:
            if not self._skipping:
                self.stats.oversized_lines += 1
                self.stats.bad_lines += 1
            self._skipping = True
            buf.clear()

    def finish(self) -> Iterator[bytes]:
        """The last line when the stream does not end with a newline."""
        if self._inflate is not None:
            try:
                tail = self._inflate.flush()
            except zlib.error:
                tail = b""
            if tail:
                yield from self.feed_plain(tail)
        if self._buffer and not self._skipping:
            line = bytes(self._buffer).strip()
            if line:
                yield line
        self._buffer.clear()

    def feed_plain(self, data: bytes) -> Iterator[bytes]:
        inflate, self._inflate = self._inflate, None
        try:
            yield from self.feed(data)
        finally:
            self._inflate = inflate

    def parse(self, line: bytes) -> dict[str, Any] | None:
        """Parse one line as a FHIR resource; count and return ``None`` when it is not one."""
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.stats.bad_lines += 1
            return None
        rtype = value.get("resourceType") if isinstance(value, dict) else None
        if not isinstance(rtype, str) or not rtype:
            self.stats.bad_lines += 1
            return None
        self.stats.resources += 1
        self.stats.by_type[rtype] = self.stats.by_type.get(rtype, 0) + 1
        return value


def read_resource_lines(
    path: str | Path, stats: LineStats | None = None
) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """``(line, resource)`` for each FHIR resource line of an NDJSON file on disk.

    For files this client wrote itself (export folders, gateway snapshots):
    the raw line comes along so it can be copied without re-serialising.
    Lines that are not FHIR resources are counted in ``stats`` and skipped.
    """
    stats = stats if stats is not None else LineStats()
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.strip()
            if not line:
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                stats.bad_lines += 1
                continue
            if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
                stats.bad_lines += 1
                continue
            stats.resources += 1
            yield line, value
