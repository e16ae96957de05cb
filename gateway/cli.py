"""The ``ehds`` command line.

Sub-command groups live in ``gateway.commands.<name>``; a group whose module is
not there yet is simply not listed, so ``ehds --help`` shows exactly what works.
Errors from any package surface as one line on stderr and a non-zero exit code,
never as a traceback (set ``EHDS_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.commands import COMMAND_MODULES

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ehds",
        description=(
            "EHDS Gateway: federated analysis of health data under EHDS data permits.\n"
            "HDABs issue signed permits, hospitals compute features from FHIR locally,\n"
            "researchers train XGBoost with Flower, and every step is a signed entry\n"
            "in a verifiable Merkle audit log."
        ),
        epilog="Start with `ehds demo` to see the whole flow on synthetic data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ehds {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"gateway.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gateway.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("ehds: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, never a traceback
        if os.environ.get("EHDS_DEBUG"):
            raise
        code = getattr(exc, "code", None)
        prefix = f"[{code}] " if isinstance(code, str) else ""
        print(f"ehds: error: {prefix}{exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
