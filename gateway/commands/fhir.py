"""``ehds fhir``: pull FHIR from a hospital server (search, Bulk ``$export``, metadata).

``ehds fhir export`` writes NDJSON in the Bulk Data layout that ``ehds features``
reads, keeps its job state in ``<out>/.export-state`` so the same command
resumes after an interruption, and records ``transactionTime`` for the next
incremental run (``--since-state``). ``ehds fhir search`` writes the matching
resources as NDJSON. Server errors (OperationOutcome) come out as one line.

Exit codes of ``export``: 0 complete; 3 partial (the server listed failures
under ``error[]``: the next run must not be incremental); 130 interrupted
(the job is left on the server to resume, or cancelled if you said so);
2 any other error.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from fhir_adapters.errors import BulkExportError, FhirSourceError

if TYPE_CHECKING:  # imported lazily: `ehds --help` should not pay for aiohttp and jwcrypto
    from fhir_adapters.sources.bulk_export import ExportProgress, ExportRequest
    from fhir_adapters.sources.http import FhirClient

EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fhir",
        help="pull FHIR from a server: search, Bulk Data $export, CapabilityStatement",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="fhir_command", metavar="SUBCOMMAND", required=True)

    export = sub.add_parser("export", help="Bulk Data $export into an NDJSON directory (resumable)")
    _common(export)
    export.add_argument(
        "--out", required=True, type=Path, help="output directory (holds the job state)"
    )
    export.add_argument("--level", choices=("system", "patient", "group"), default="system")
    export.add_argument("--group", help="Group id (with --level group)")
    export.add_argument(
        "--type", action="append", default=[], help="resource type(s), repeat or comma-separate"
    )
    export.add_argument("--since", help="only resources changed after this FHIR instant")
    export.add_argument(
        "--since-state",
        type=Path,
        help="use the transactionTime of a previous export (its directory or .export-state file) as --since",
    )
    export.add_argument("--until", help="only resources changed before this FHIR instant")
    export.add_argument(
        "--type-filter",
        action="append",
        default=[],
        help="_typeFilter, e.g. 'Observation?code=http://loinc.org|2339-0'",
    )
    export.add_argument(
        "--patient",
        action="append",
        default=[],
        help="restrict a Patient/Group export to this patient id (repeatable; sent by POST)",
    )
    export.add_argument(
        "--restart", action="store_true", help="drop the saved job in --out and start a new one"
    )
    export.add_argument(
        "--restart-on-expired",
        action="store_true",
        help="when the server has dropped the job's files (HTTP 410), start a new export once",
    )
    export.add_argument(
        "--allow-partial-manifests",
        action="store_true",
        help="let the server answer with a manifest in pages (followed to the end)",
    )
    export.add_argument(
        "--cancel",
        action="store_true",
        help="cancel the job recorded in --out on the server (DELETE its status URL) and stop",
    )
    export.add_argument(
        "--poll-floor",
        type=float,
        default=1.0,
        help="never poll the status faster than this, seconds (even if the server says 0)",
    )
    export.add_argument(
        "--deadline",
        type=float,
        default=24 * 3600.0,
        help="give up polling after this many seconds (job kept)",
    )
    export.add_argument(
        "--poll-cap",
        type=float,
        default=120.0,
        help="longest backoff between polls when the server sends no Retry-After, seconds",
    )
    export.add_argument("--concurrency", type=int, default=4, help="files downloaded at once")
    export.add_argument(
        "--no-delete", action="store_true", help="do not DELETE the job on the server when done"
    )
    export.add_argument(
        "--no-capability-check",
        action="store_true",
        help="kick off even if /metadata does not declare $export",
    )
    export.set_defaults(func=cmd_export)

    find = sub.add_parser("search", help="FHIR search following every next page, as NDJSON")
    _common(find)
    find.add_argument("resource_type", metavar="TYPE", help="resource type, e.g. Observation")
    find.add_argument("params", nargs="*", metavar="NAME=VALUE", help="search parameters")
    find.add_argument("--count", type=int, default=100, help="_count (page size)")
    find.add_argument("--limit", type=int, help="stop after this many resources")
    find.add_argument("--out", type=Path, help="NDJSON file to write (default: stdout)")
    find.set_defaults(func=cmd_search)

    meta = sub.add_parser("metadata", help="read the server's CapabilityStatement")
    _common(meta)
    meta.set_defaults(func=cmd_metadata)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base", required=True, help="FHIR base URL, e.g. https://fhir.example.org/r4"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument(
        "--retries", type=int, default=6, help="attempts per request on 429/5xx/transient errors"
    )
    parser.add_argument(
        "--rebase-links",
        action="store_true",
        help="move next/status/file URLs on another origin to --base's origin (servers behind a proxy)",
    )
    auth = parser.add_argument_group("SMART Backend Services")
    auth.add_argument("--client-id", help="registered client id")
    auth.add_argument("--key", type=Path, help="private JWK file (RSA -> RS384, EC P-384 -> ES384)")
    auth.add_argument(
        "--token-url", help="token endpoint (default: discover via .well-known/smart-configuration)"
    )
    auth.add_argument("--discovery", help="base URL for SMART discovery (default: --base)")
    auth.add_argument("--scope", default="system/*.rs", help="requested scopes")
    auth.add_argument(
        "--trust-origin",
        action="append",
        default=[],
        help="another origin allowed to receive the token",
    )


def _client(args: argparse.Namespace) -> FhirClient:
    from fhir_adapters.sources.http import FhirClient, RetryPolicy
    from fhir_adapters.sources.smart_auth import SmartBackendAuth, load_private_jwk

    auth = None
    if args.client_id or args.key:
        if not (args.client_id and args.key):
            raise FhirSourceError("--client-id and --key go together", code="FHIR_BAD_ARGUMENT")
        auth = SmartBackendAuth(
            client_id=args.client_id,
            key=load_private_jwk(args.key),
            token_url=args.token_url,
            discovery_base=None if args.token_url else (args.discovery or args.base),
            scope=args.scope,
        )
    if args.retries < 1:
        raise FhirSourceError("--retries must be at least 1", code="FHIR_BAD_ARGUMENT")
    return FhirClient(
        args.base,
        auth=auth,
        retry=RetryPolicy(max_attempts=args.retries),
        trusted_origins=args.trust_origin,
        rebase_links=args.rebase_links,
        on_retry=_show_wait,
    )


def _show_wait(status: int | None, delay: float) -> None:
    """Every wait is shown: a user must see that the server asked us to slow down."""
    why = f"HTTP {status}" if status is not None else "connection failed"
    print(f"ehds: {why}; retrying in {delay:.0f}s", file=sys.stderr, flush=True)


def _emit_json(data: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(data).decode() + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------ export
def _request(args: argparse.Namespace) -> ExportRequest:
    from fhir_adapters.sources.bulk_export import ExportRequest
    from fhir_adapters.sources.export_state import complete_and_whole, load_state

    since = args.since
    if args.since_state is not None:
        if since:
            raise BulkExportError(
                "give --since or --since-state, not both", code="BULK_BAD_REQUEST"
            )
        previous = load_state(
            args.since_state.parent if args.since_state.is_file() else args.since_state
        )
        if previous is None or not previous.completed or not previous.transaction_time:
            raise BulkExportError(
                "--since-state does not point to a completed export", code="BULK_BAD_REQUEST"
            )
        if not complete_and_whole(previous):
            raise BulkExportError(
                "--since-state points to a partial export (failed types: "
                f"{', '.join(previous.failed_types) or 'unknown'}); an incremental export from "
                "it would lose those resources for good: run a full export instead",
                code="BULK_SINCE_PARTIAL",
            )
        since = previous.transaction_time
    types = tuple(t.strip() for chunk in args.type for t in chunk.split(",") if t.strip())
    return ExportRequest(
        level=args.level,
        group_id=args.group,
        types=types,
        since=since,
        until=args.until,
        type_filters=tuple(args.type_filter),
        patients=tuple(args.patient),
        allow_partial_manifests=args.allow_partial_manifests,
    )


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A rich progress display on stderr; yields an ``on_progress`` hook."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        job = progress.add_task("kick-off", total=None)
        files: list[Any] = []

        def hook(event: ExportProgress) -> None:
            if event.phase == "kickoff":
                progress.update(job, description="$export: kick-off")
            elif event.phase == "resume":
                progress.update(
                    job, description=f"$export: resuming saved job ({event.polls} polls before)"
                )
            elif event.phase == "manifest_page":
                progress.update(job, description=f"$export: manifest page {event.polls}")
            elif event.phase == "polling":
                text = event.message or "in progress"
                progress.update(
                    job,
                    description=f"$export: {text} (poll {event.polls}, next in {event.next_poll or 0:.0f}s)",
                )
            elif event.phase == "manifest":
                progress.update(job, description="$export: ready", total=1, completed=1)
                files.append(progress.add_task("downloading", total=event.files_total))
            elif event.phase == "file":
                if not files:
                    files.append(progress.add_task("downloading", total=event.files_total))
                progress.update(
                    files[0],
                    completed=event.files_done,
                    total=event.files_total,
                    description=f"downloading ({event.resources} resources)",
                )

        yield hook


def _exporter(client: FhirClient, args: argparse.Namespace, hook: Any = None) -> Any:
    from fhir_adapters.sources.bulk_export import BulkExporter

    return BulkExporter(
        client,
        deadline=args.deadline,
        poll_backoff_cap=args.poll_cap,
        poll_floor=args.poll_floor,
        concurrency=args.concurrency,
        check_capability=not args.no_capability_check,
        delete_when_done=not args.no_delete,
        on_progress=hook,
    )


def _cancel(args: argparse.Namespace) -> bool:
    async def run() -> bool:
        async with _client(args) as client:
            return bool(await _exporter(client, args).cancel(args.out))

    return asyncio.run(run())


def _cancel_command(args: argparse.Namespace) -> str:
    argv = ["ehds", "fhir", "export", "--base", args.base, "--out", str(args.out), "--cancel"]
    for flag, value in (
        ("--client-id", args.client_id),
        ("--key", args.key),
        ("--token-url", args.token_url),
    ):
        if value:
            argv += [flag, str(value)]
    return shlex.join(argv)


def _interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C: the server job outlives us unless the user, asked, cancels it."""
    from fhir_adapters.sources.export_state import load_state

    state = load_state(args.out)
    if state is None or state.status_url is None or state.completed or state.job_deleted:
        print("ehds: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if sys.stdin.isatty() and sys.stderr.isatty():
        try:
            answer = input("Interrupted. Cancel the export job on the server too? [y/N] ")
        except (EOFError, KeyboardInterrupt):
            answer = ""
        if answer.strip().lower() in ("y", "yes"):
            done = _cancel(args)
            print(
                "ehds: export job cancelled on the server"
                if done
                else "ehds: the server did not accept the cancel; the job may still run",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    print(
        "ehds: interrupted; the export job is still running on the server.\n"
        "  resume: run the same command again (same --out and options)\n"
        f"  cancel: {_cancel_command(args)}",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED


def cmd_export(args: argparse.Namespace) -> int:
    if args.cancel:
        accepted = _cancel(args)
        if args.json:
            _emit_json({"cancelled": accepted, "out_dir": str(args.out)})
        else:
            print(
                "export job cancelled on the server"
                if accepted
                else "the server did not accept the cancel (the job may be gone already)"
            )
        return 0 if accepted else 2
    request = _request(args)
    show = not args.json and sys.stderr.isatty()

    async def run() -> dict[str, Any]:
        with _progress(show) as hook:
            async with _client(args) as client:
                result = await _exporter(client, args, hook).run(
                    request,
                    args.out,
                    restart=args.restart,
                    restart_on_expired=args.restart_on_expired,
                )
                return dict(result.as_dict())

    try:
        summary = asyncio.run(run())
    except KeyboardInterrupt:
        return _interrupted(args)
    code = EXIT_PARTIAL if summary["partial"] else 0
    if args.json:
        _emit_json(summary)
        return code
    print(
        f"exported {summary['resources']} resources in {summary['files']} files to {summary['out_dir']}"
        f"{' (resumed)' if summary['resumed'] else ''}"
        f"{' (restarted: the earlier files had expired)' if summary['restarted_on_expired'] else ''}"
    )
    for rtype, n in sorted(summary["resources_by_type"].items()):
        print(f"  {rtype}: {n}")
    if summary["manifest_pages"] > 1:
        print(f"  manifest followed over {summary['manifest_pages']} pages")
    if summary["bad_lines"]:
        print(f"  skipped {summary['bad_lines']} lines that were not FHIR resources")
    if summary["error_outcomes"]:
        codes = ", ".join(f"{c}={n}" for c, n in sorted(summary["error_codes"].items()))
        print(
            f"  server reported {summary['error_outcomes']} OperationOutcomes ({codes}) in error/"
        )
    if summary["deleted"]:
        print(f"  server reported {summary['deleted']} deleted resources in deleted/")
    if summary["partial"]:
        print(
            f"PARTIAL export: the server failed to export {', '.join(summary['failed_types'])} "
            "(see error/). Do not use this export as the base of an incremental one; fix the "
            "cause and run a full export again (--restart)."
        )
    else:
        print(f"next incremental export: --since {summary['next_since']}")
    return code


# ------------------------------------------------------------------ search
def _params(raw: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise FhirSourceError(
                f"search parameter must be NAME=VALUE, got {item[:40]!r}", code="FHIR_BAD_ARGUMENT"
            )
        out.append((name, value))
    return out


def cmd_search(args: argparse.Namespace) -> int:
    from fhir_adapters.sources.search import SearchStats, search

    params = _params(args.params)
    stats = SearchStats()

    async def run(sink: IO[bytes]) -> None:
        async with _client(args) as client:
            async for resource in search(
                client, args.resource_type, params, count=args.count, limit=args.limit, stats=stats
            ):
                sink.write(orjson.dumps(resource) + b"\n")

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        part = args.out.with_name(args.out.name + ".part")
        try:
            with open(part, "wb") as fh:
                asyncio.run(run(fh))
            part.replace(args.out)
        finally:
            part.unlink(missing_ok=True)
    else:
        asyncio.run(run(sys.stdout.buffer))
        sys.stdout.buffer.flush()
    summary = {
        "resource_type": args.resource_type,
        "resources": stats.resources,
        "pages": stats.pages,
        "total": stats.total,
        "outcomes": stats.outcomes,
        "out": str(args.out) if args.out else None,
    }
    if args.json:
        stream = sys.stdout if args.out is not None else sys.stderr
        stream.write(orjson.dumps(summary).decode() + "\n")
    else:
        print(
            f"{stats.resources} {args.resource_type} resources from {stats.pages} pages"
            + (f" (server total {stats.total})" if stats.total is not None else ""),
            file=sys.stderr if args.out is None else sys.stdout,
        )
    return 0


# ---------------------------------------------------------------- metadata
def cmd_metadata(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with _client(args) as client:
            return (await client.capability()).as_dict()

    cap = asyncio.run(run())
    if args.json:
        _emit_json(cap)
    else:
        print(
            f"FHIR {cap['fhir_version']} ({cap['release']}), software {cap['software'] or 'unknown'}"
        )
        print(f"$export levels: {', '.join(cap['export_levels']) or 'none declared'}")
    return 0
