"""``ehds view run``: run SQL-on-FHIR v2 ViewDefinitions over FHIR data, write tables.

``ehds view run patient.json obs.json --input export/ --out tables/ --format csv``
reads the input once (NDJSON/Bundle files and folders, ``.gz``, or a FHIR base
URL through the search client, or Bulk ``$export`` with ``--export``), runs every view on the resources of its type
and writes one table per view: ``<out>/<view name>.csv|.ndjson|.parquet``.
Streaming: rows are written as they come, memory stays bounded by one
resource and a write buffer. Tables are written to ``*.part`` and renamed at
the end, so a failed run never leaves a table that looks complete.

Data quality is the same as everywhere (one reader, one report): quarantined
and unreadable items and per-view evaluation errors are counted in the
summary, never silently dropped. On a terminal a progress bar runs on stderr;
otherwise one summary line is printed (``--json``: one JSON object).
Parquet needs pyarrow (``pip install 'ehds-gateway[parquet]'``); without it
the command refuses before reading anything.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from fhir_adapters.quality import INVALID_JSON, QualityReport

FORMATS = ("csv", "ndjson", "parquet")
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "view",
        help="run SQL-on-FHIR ViewDefinitions over FHIR files or a server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="view_command", required=True)
    run_p = sub.add_parser("run", help="run views, write one table per view")
    run_p.add_argument("views", nargs="+", type=Path, help="ViewDefinition JSON file(s)")
    run_p.add_argument(
        "--input",
        action="append",
        required=True,
        help="NDJSON/Bundle file or folder, or a FHIR base URL (repeatable)",
    )
    run_p.add_argument(
        "--export",
        action="store_true",
        help="read a FHIR base URL with Bulk Data $export (_type = the views' types), not search",
    )
    run_p.add_argument("--out", required=True, type=Path, help="output folder")
    run_p.add_argument("--format", choices=FORMATS, default="csv")
    run_p.add_argument("--validate", choices=("full", "sample", "off"), default="off")
    run_p.add_argument(
        "--fhir-version", help="read the data as this release (default: the views' fhirVersion)"
    )
    run_p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run_p.set_defaults(func=run)


def _fail(message: str, code: str) -> Exception:
    from fhir_adapters.errors import FhirAdapterError

    return FhirAdapterError(message, code=code)


def _load_views(paths: list[Path], fhir_version: str | None) -> list[tuple[str, Any]]:
    from fhir_adapters.views import compile_view

    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for path in paths:
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise _fail(f"cannot read ViewDefinition {path.name}", "VIEW_FILE_INVALID") from exc
        view = compile_view(doc, fhir_version=fhir_version)
        base = _NAME.sub("_", view.name or path.stem.removesuffix(".view")) or "view"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        out.append((name, view))
    return out


def _release(views: list[tuple[str, Any]], stated: str | None) -> str | None:
    if stated:
        from fhir_adapters.release import normalize_version

        return normalize_version(stated)
    releases = {v.fhir_version for _, v in views if v.fhir_version is not None}
    if len(releases) > 1:
        raise _fail("the views are written for different FHIR releases", "VIEW_FHIR_VERSION")
    return releases.pop() if releases else None


# --------------------------------------------------------------------------- input


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _from_server(
    base: str, types: list[str], bulk: bool, report: QualityReport
) -> Iterator[dict[str, Any]]:
    """Every resource of the views' types from a FHIR server (search, or Bulk ``$export``)."""
    from fhir_adapters.sources import BulkExporter, ExportRequest, FhirClient, iterate_sync, search

    if bulk:
        bad = [0]

        async def export() -> Any:
            async with FhirClient(base) as client:
                exporter = BulkExporter(client)
                try:
                    async for resource in exporter.stream(ExportRequest(types=tuple(types))):
                        yield resource
                finally:
                    bad[0] = exporter.stream_bad_lines

        yield from iterate_sync(export)
        if bad[0]:  # lines the export files held that were not resources: counted, not lost
            report.count(INVALID_JSON, bad[0])
        return
    for rtype in types:

        async def one(rtype: str = rtype) -> Any:
            async with FhirClient(base) as client:
                async for resource in search(client, rtype):
                    yield resource

        yield from iterate_sync(one)


def _server_release(base: str) -> str | None:
    """The release a server's CapabilityStatement declares (None when it declares none we read)."""
    import asyncio

    from fhir_adapters.errors import ValidationModeError
    from fhir_adapters.release import normalize_version
    from fhir_adapters.sources import FhirClient

    async def ask() -> str:
        async with FhirClient(base) as client:
            return (await client.capability()).fhir_version

    try:
        return normalize_version(asyncio.run(ask()))
    except ValidationModeError:
        return None


def _stream(
    args: argparse.Namespace, types: list[str], release: str | None
) -> tuple[Any, str | None]:
    from fhir_adapters.stream import ResourceStream

    report = QualityReport()
    urls = [item for item in args.input if _is_url(item)]
    if release is None and len(urls) == 1 and len(args.input) == 1:
        release = _server_release(urls[0])  # the server's recorded release, when it is the source
    sources: list[Any] = []
    for item in args.input:
        if _is_url(item):
            sources.append(_from_server(item, types, args.export, report))
        else:
            sources.append(Path(item))
    stream = ResourceStream(sources, validate=args.validate, fhir_version=release, report=report)
    return stream, release


# --------------------------------------------------------------------------- output


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return repr(v) if isinstance(v, float) else str(v)
    return orjson.dumps(v, default=str).decode()


class _Writer:
    """One table: rows streamed to ``<name>.<ext>.part``, renamed by :meth:`close`."""

    def __init__(self, out: Path, name: str, columns: tuple[str, ...], fmt: str) -> None:
        self.final = out / f"{name}.{fmt}"
        self.part = out / f"{name}.{fmt}.part"
        self.columns = columns
        self.fmt = fmt
        self.rows = 0
        self._fh: IO[Any] | None = None
        self._csv: Any = None
        self._batch: list[tuple[Any, ...]] = []
        self._pq: Any = None
        if fmt == "csv":
            self._fh = self.part.open("w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._fh)
            self._csv.writerow(columns)
        elif fmt == "ndjson":
            self._fh = self.part.open("wb")

    def write(self, row: tuple[Any, ...]) -> None:
        self.rows += 1
        if self.fmt == "csv":
            self._csv.writerow([_cell(v) for v in row])
        elif self.fmt == "ndjson":
            assert self._fh is not None
            self._fh.write(
                orjson.dumps(dict(zip(self.columns, row, strict=True)), default=str) + b"\n"
            )
        else:
            self._batch.append(row)
            if len(self._batch) >= 65_536:
                self._flush_parquet()

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = list(zip(*self._batch, strict=True)) if self._batch else [()] * len(self.columns)
        arrays = [pa.array([_arrow(v) for v in col]) for col in cols]
        table = pa.Table.from_arrays(arrays, names=list(self.columns))
        if self._pq is None:
            self._pq = pq.ParquetWriter(str(self.part), table.schema)
        self._pq.write_table(table.cast(self._pq.schema))
        self._batch.clear()

    def close(self, ok: bool) -> None:
        if self.fmt == "parquet" and ok and (self._batch or self._pq is None):
            self._flush_parquet()
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()
        if ok:
            self.part.replace(self.final)
        else:
            self.part.unlink(missing_ok=True)


def _arrow(v: Any) -> Any:
    return orjson.dumps(v, default=str).decode() if isinstance(v, list | dict) else v


def _require_parquet() -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ModuleNotFoundError:
        raise _fail(
            "--format parquet needs pyarrow, which is not installed here "
            "(pip install 'ehds-gateway[parquet]'); use csv or ndjson",
            "VIEW_PARQUET_UNAVAILABLE",
        ) from None


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    from fhir_adapters.errors import ViewEvaluationError

    if args.format == "parquet":
        _require_parquet()
    views = _load_views(args.views, args.fhir_version)
    release = _release(views, args.fhir_version)
    by_type: dict[str, list[tuple[str, Any]]] = {}
    for name, view in views:
        by_type.setdefault(view.resource, []).append((name, view))
    stream, release = _stream(args, sorted(by_type), release)
    args.out.mkdir(parents=True, exist_ok=True)
    writers = {
        name: _Writer(args.out, name, view.column_names, args.format) for name, view in views
    }
    errors = dict.fromkeys(writers, 0)
    show = sys.stderr.isatty() and not args.json
    ok = False
    try:
        from gateway.commands.features import _progress

        for res in _progress(stream, show):
            for name, view in by_type.get(res.get("resourceType"), ()):  # type: ignore[arg-type]
                try:
                    rows = view.evaluate_tuples(res)
                except ViewEvaluationError:
                    errors[name] += 1
                    continue
                write = writers[name].write
                for row in rows:
                    write(row)
        ok = True
    finally:
        for w in writers.values():
            w.close(ok)
    quality = stream.report.summary()
    summary = {
        "format": args.format,
        "out": str(args.out),
        "fhir_version": release,
        "resources": quality["resources_read"],
        "rows": {name: w.rows for name, w in writers.items()},
        "view_errors": errors,
        "problems": quality["problems"],
        "problems_by_kind": {k: v for k, v in quality["problems_by_kind"].items() if v},
        "quarantined_by_type": quality["quarantined_by_type"],
    }
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        tables = ", ".join(f"{n} {r:,}" for n, r in summary["rows"].items())
        failed = sum(errors.values())
        print(
            f"view run: {summary['resources']:,} resources -> {tables} rows "
            f"({args.format} in {args.out}); problems {summary['problems']:,}"
            + (f"; view errors {failed:,}" if failed else "")
        )
    return 0
