"""The ``ehds`` command line.

Sub-command groups live in ``gateway.commands.<name>``; a group whose module is
not there yet is simply not listed, so ``ehds --help`` shows exactly what works.
Only the group being run is imported (the others are listed from their module
docstrings), so ``ehds --version`` and ``ehds --help`` answer at once instead
of loading SQLAlchemy, Flower and XGBoost first.

Errors from any package surface as one line on stderr and a non-zero exit code,
never as a traceback (set ``EHDS_DEBUG=1`` to see one); under ``--json`` that
line is a JSON object ``{"error": {"code": ..., "message": ...}}``. Output into
a closed pipe (``ehds permit show | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import os
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.commands import COMMAND_MODULES

EXIT_ERROR = 2
EXIT_PIPE = 141  # what a shell reports for a process ended by SIGPIPE
DESCRIPTION = (
    "EHDS Gateway: federated analysis of health data under EHDS data permits.\n"
    "HDABs issue signed permits, hospitals compute features from FHIR locally,\n"
    "researchers train XGBoost with Flower, and every step is a signed entry\n"
    "in a verifiable Merkle audit log."
)


def _summary(name: str) -> str | None:
    """First docstring line of ``gateway.commands.<name>``, read without importing it."""
    spec = importlib.util.find_spec(f"gateway.commands.{name}")
    if spec is None or spec.origin is None:
        return None
    try:
        with open(spec.origin, encoding="utf-8") as fh:
            doc = ast.get_docstring(ast.parse(fh.read())) or ""
    except (OSError, SyntaxError):
        return ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    _, sep, rest = first.partition(": ")
    return (rest if sep and first.startswith("``") else first).rstrip(".")


def _chosen(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMAND_MODULES else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` is imported (all when ``argv`` is None)."""
    parser = argparse.ArgumentParser(
        prog="ehds",
        description=DESCRIPTION,
        epilog="Start with `ehds demo` to see the whole flow on synthetic data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ehds {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(argv) if argv is not None else None
    for name in COMMAND_MODULES:
        if argv is not None and name != chosen:
            summary = _summary(name)
            if summary is not None:
                sub.add_parser(name, help=summary, add_help=False)
            continue
        try:
            module = importlib.import_module(f"gateway.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gateway.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def _error_line(code: str | None, message: str, as_json: bool) -> str:
    if as_json:
        import orjson

        return orjson.dumps({"error": {"code": code, "message": message}}).decode()
    prefix = f"[{code}] " if code else ""
    return f"ehds: error: {prefix}{message}"


def _quiet_pipe() -> int:
    """The reader went away: stop writing, say nothing (Python docs, 'Note on SIGPIPE')."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:  # also after argparse's SystemExit (--help)
            sys.stdout.flush()
    except BrokenPipeError:
        return _quiet_pipe()


def _run(argv: Sequence[str] | None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args_in
    if args_in[:1] == ["--version"]:
        print(f"ehds {__version__}")
        return 0
    parser = build_parser(args_in)
    try:
        if as_json:  # usage errors as JSON too
            captured = io.StringIO()
            try:
                with contextlib.redirect_stderr(captured):
                    args = parser.parse_args(args_in)
            except SystemExit as exc:
                text = captured.getvalue().strip()
                if exc.code not in (0, None) and text:
                    message = text.splitlines()[-1].partition("error: ")[2] or text
                    print(_error_line("USAGE", message, True), file=sys.stderr)
                elif text:
                    print(text, file=sys.stderr)
                return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_ERROR
        else:
            args = parser.parse_args(args_in)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 0
        return int(func(args) or 0)
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        print("ehds: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, never a traceback
        if os.environ.get("EHDS_DEBUG"):
            raise
        code_attr = getattr(exc, "code", None)
        print(
            _error_line(code_attr if isinstance(code_attr, str) else None, str(exc), as_json),
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
