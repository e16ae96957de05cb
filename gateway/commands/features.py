"""``ehds features``: compute a feature specification's matrix from local FHIR files.

Reads NDJSON files/folders (Bulk Data output, ``.ndjson``/``.ndjson.gz``) and
Bundle files, runs the spec's ViewDefinitions and recipe, and prints the
cohort summary: patients, label positives, per-feature counts and
missingness, opt-out exclusions and every data-quality problem by kind.
``--out`` writes the matrix (``.npz`` or ``.csv``); patient keys are written
only with ``--include-keys`` and never printed. ``--json`` prints the same
summary as one JSON object (counts only, safe to share).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "features",
        help="compute a feature spec's matrix from local FHIR files (cohort summary)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--spec", required=True, type=Path, help="feature specification (JSON)")
    parser.add_argument(
        "--source",
        action="append",
        type=Path,
        default=[],
        help="NDJSON/Bundle file or folder (repeatable; each is its own source for R4/R5 detection)",
    )
    parser.add_argument("--validate", choices=("full", "sample", "off"), default="off")
    parser.add_argument(
        "--validate-all-types",
        action="store_true",
        help="validate every resource type, not only those the spec's views read",
    )
    parser.add_argument(
        "--sample-rate", type=float, default=0.05, help="fraction for --validate sample"
    )
    parser.add_argument(
        "--fhir-version", choices=("R4", "R5"), help="force the FHIR release (default: detect)"
    )
    parser.add_argument("--out", type=Path, help="write the matrix: .npz or .csv")
    parser.add_argument(
        "--include-keys", action="store_true", help="write patient keys into --out (stays local)"
    )
    parser.add_argument(
        "--min-rows", type=int, help="refuse a cohort smaller than this (permit minimum)"
    )
    parser.add_argument(
        "--opt-out",
        type=Path,
        help="opt-out registry: ids / Patient/<id> lines (# comments), or Consent JSON/NDJSON",
    )
    parser.add_argument(
        "--concept-map",
        action="append",
        type=Path,
        default=[],
        help="site-local ConceptMap JSON (repeatable)",
    )
    parser.add_argument(
        "--quarantine", type=Path, help="write quarantined items as NDJSON (local only)"
    )
    parser.add_argument(
        "--hash", action="store_true", help="print the spec's canonical hash and exit"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(func=run)


def _progress(resources: Iterable[dict[str, Any]], enabled: bool) -> Iterator[dict[str, Any]]:
    """Pass resources through, showing a rich progress counter on stderr."""
    if not enabled:
        yield from resources
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} resources"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("reading FHIR", total=None)
        n = 0
        for r in resources:
            n += 1
            if not n & 0xFFF:
                progress.update(task, completed=n)
            yield r
        progress.update(task, completed=n)


def run(args: argparse.Namespace) -> int:
    from fhir_adapters.errors import FhirAdapterError
    from fhir_adapters.features import FeatureSpec, extract_features
    from fhir_adapters.stream import ResourceStream

    spec = FeatureSpec.from_file(args.spec)
    if args.hash:
        digest = spec.canonical_hash()
        print(orjson.dumps({"spec_hash": digest}).decode() if args.json else digest)
        return 0
    if not args.source:
        raise FhirAdapterError("give at least one --source", code="FEATURE_NO_SOURCE")
    opt_out = None
    if args.opt_out is not None:
        from fhir_adapters.optout_file import read_opt_out
        from permits.optout import ConsentOptOutRegistry

        opt_out = read_opt_out(args.opt_out, ConsentOptOutRegistry.from_resources)
    maps = []
    for path in args.concept_map:
        try:
            maps.append(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError) as exc:
            raise FhirAdapterError(
                f"cannot read ConceptMap {path.name}", code="CONCEPTMAP_INVALID"
            ) from exc
    stream = ResourceStream(
        args.source,
        validate=args.validate,
        sample_rate=args.sample_rate,
        fhir_version=args.fhir_version or spec.fhir_version,
        validate_types=None if args.validate_all_types else spec.resource_types(),
    )
    show = sys.stderr.isatty() and not args.json
    wrapped = _progress(stream, show)
    matrix = extract_features(
        spec,
        _Passthrough(stream, wrapped),
        opt_out=opt_out,
        min_rows=args.min_rows,
        concept_maps=maps,
    )
    if args.out is not None:
        matrix.save(args.out, include_keys=args.include_keys)
    if args.quarantine is not None:
        with args.quarantine.open("wb") as fh:
            for entry in matrix.report.quality.quarantine:
                fh.write(orjson.dumps(entry.as_dict()) + b"\n")
    summary = matrix.summary()
    if args.out is not None:
        summary["out"] = str(args.out)
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        _print_summary(summary)
    return 0


class _Passthrough:
    """A ResourceStream whose iteration goes through the progress wrapper (same report)."""

    def __init__(self, stream: Any, wrapped: Iterator[dict[str, Any]]) -> None:
        self.report = stream.report
        self._wrapped = wrapped

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._wrapped


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    report = summary["report"]
    quality = report["quality"]
    console.print(f"[bold]spec[/bold] {summary['spec_hash']}")
    console.print(
        f"patients {summary['rows']:,}  (seen {report['patients_seen']:,}, "
        f"opted out {summary['excluded_opt_out']:,}, no index date {report['excluded_no_index']:,})"
    )
    if summary["label"] is not None:
        console.print(f"label {summary['label']}: {summary['label_positive']:,} positive")
    console.print(
        f"resources {quality['resources_read']:,}  validation {quality['validation_mode']} "
        f"({quality['validated']:,} checked)  FHIR {', '.join(quality['fhir_versions']) or '-'}"
    )
    if report.get("fhir_version_mismatch"):
        console.print(
            f"[yellow]warning:[/yellow] data is FHIR {', '.join(quality['fhir_versions'])} "
            f"but the spec's views target {report['spec_fhir_version']}"
        )
    table = Table(title="features")
    table.add_column("feature")
    table.add_column("count", justify="right")
    table.add_column("missing", justify="right")
    for name, item in summary["per_feature"].items():
        table.add_row(name, f"{item['count']:,}", f"{100 * item['missing']:.1f}%")
    console.print(table)
    problems = {k: v for k, v in quality["problems_by_kind"].items() if v}
    if problems:
        console.print("problems: " + ", ".join(f"{k} {v:,}" for k, v in sorted(problems.items())))
    else:
        console.print("problems: none")
    by_type = quality.get("quarantined_by_type") or {}
    if by_type:
        console.print("quarantined: " + ", ".join(f"{k} {v:,}" for k, v in sorted(by_type.items())))
    for warning in report.get("warnings", ()):
        console.print(f"[yellow]warning:[/yellow] feature {warning['feature']}: {warning['kind']}")
    if "out" in summary:
        console.print(f"matrix written to {summary['out']}")
