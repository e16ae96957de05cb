"""Sub-commands of ``ehds``: one module per command group.

Each module exposes ``register(subparsers)`` which adds its parser(s) and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an
exit code). ``gateway.cli`` discovers them through ``COMMAND_MODULES`` so each
group can be written and tested on its own.
"""

# Order is the order shown in ``ehds --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "keys",
    "hdab",
    "node",
    "permit",
    "audit",
    "witness",
    "fhir",
    "features",
    "train",
    "demo",
)
