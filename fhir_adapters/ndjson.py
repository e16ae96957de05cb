"""NDJSON sources (FHIR Bulk Data output): one resource per line, streamed.

Memory stays bounded by the longest line: files are read line by line, gzip
is decompressed on the fly, folders are walked in sorted order so runs are
reproducible. A line that does not parse is counted (``truncated_line`` when
it looks like a cut-off JSON object, ``invalid_json`` otherwise) and the next
line is read: a single bad line never loses the rest of the file.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from fhir_adapters.errors import SourceError
from fhir_adapters.position import ReadPosition
from fhir_adapters.quality import (
    INVALID_JSON,
    NOT_AN_OBJECT,
    TRUNCATED_LINE,
    QualityReport,
)

NDJSON_SUFFIXES: tuple[str, ...] = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")


def is_ndjson(path: Path) -> bool:
    """True for the file names Bulk Data servers use for NDJSON output."""
    name = path.name.lower()
    return any(name.endswith(s) for s in NDJSON_SUFFIXES)


def ndjson_files(path: Path) -> list[Path]:
    """The NDJSON files of a file or folder (recursively, sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_ndjson(p))
    raise SourceError(f"NDJSON source not found: {path.name}")


def _open(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _classify_bad_line(raw: bytes, is_last: bool) -> str:
    """Tell a cut-off object (export interrupted, disk full) from garbage."""
    text = raw.strip()
    if text.startswith(b"{") and (is_last or not text.endswith(b"}")):
        return TRUNCATED_LINE
    return INVALID_JSON


def parse_lines(
    lines: Iterable[bytes],
    report: QualityReport,
    source: str = "<stream>",
    position: ReadPosition | None = None,
) -> Iterator[dict[str, Any]]:
    """Parse NDJSON lines; bad lines are counted in ``report`` and skipped.

    The hot loop is one ``orjson.loads`` per line (and, with ``position``, one
    attribute store so a quarantine record can name the line).
    """
    loads = orjson.loads
    if position is not None:
        position.at(source)
    for lineno, raw in enumerate(lines, 1):
        if position is not None:
            position.line = lineno
        try:
            obj = loads(raw)
        except orjson.JSONDecodeError as exc:
            if not raw.strip():
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 BOM from some exporters
                try:
                    obj = loads(raw[3:])
                except orjson.JSONDecodeError:
                    pass
                else:
                    if type(obj) is dict:
                        yield obj
                        continue
            kind = _classify_bad_line(raw, not raw.endswith(b"\n"))
            report.add(kind, message=_json_message(exc), source=source, line=lineno)
            continue
        if type(obj) is dict:
            yield obj
        else:
            report.add(
                NOT_AN_OBJECT, message="line is not a JSON object", source=source, line=lineno
            )


def _json_message(exc: orjson.JSONDecodeError) -> str:
    # orjson messages quote no input, only the position: safe to keep.
    return str(exc).split(":", 1)[0][:120]


def iter_ndjson(
    path: str | Path, report: QualityReport, position: ReadPosition | None = None
) -> Iterator[dict[str, Any]]:
    """Stream the resources of an NDJSON file or folder (``.ndjson``, ``.ndjson.gz``)."""
    root = Path(path)
    for file in ndjson_files(root):
        try:
            handle = _open(file)
        except OSError as exc:
            raise SourceError(f"cannot open {file.name}: {exc.strerror}") from exc
        with handle:
            try:
                yield from parse_lines(handle, report, source=file.name, position=position)
            except (OSError, EOFError) as exc:  # truncated gzip stream
                report.add(
                    TRUNCATED_LINE, message=f"file cut off: {type(exc).__name__}", source=file.name
                )
