"""``ehds hdab staff add|disable|reset|list``: the console's staff accounts.

Run on the HDAB's host against its configuration (same database and audit log as
``ehds hdab serve``). Passwords are read from a terminal prompt (twice) or, for
automation, one line on standard input with ``--password-stdin``; never from the
command line, where other users and shell history would see them. Each change is
an audit event ``staff.changed`` naming the staff id, never the password.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any

from gateway.commands._serve import config_from_args
from gateway.errors import ValidationError


def _password(args: argparse.Namespace) -> str:
    from gateway.console.passwords import check_strength

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != password:
            raise ValidationError("the passwords differ", code="STAFF_PASSWORD_MISMATCH")
    try:
        check_strength(password)
    except ValueError as exc:
        raise ValidationError(str(exc), code="STAFF_WEAK_PASSWORD") from None
    return password


def _run(args: argparse.Namespace) -> int:
    from gateway.audit_backend import open_audit
    from gateway.console.passwords import hash_password
    from gateway.console.store import ConsoleStore, check_role, check_staff_id
    from gateway.hdab_service import _sqlalchemy_url
    from permits.hdab import make_engine

    config = config_from_args(args, "hdab")
    action = args.staff_command
    if action != "list":
        check_staff_id(args.staff_id)
    if getattr(args, "role", None):
        check_role(args.role)
    password = _password(args) if action in ("add", "reset") else ""
    engine = make_engine(_sqlalchemy_url(config.hdab_database))
    try:
        store = ConsoleStore(engine)
        if action == "list":
            for s in store.all_staff():
                state = "disabled" if s.disabled else "locked" if s.locked else "active"
                print(f"{s.id}\t{s.role}\t{state}")
            return 0
        hashed = hash_password(password) if password else ""
        if action == "add":
            staff = store.add_staff(args.staff_id, args.role, hashed, now=int(time.time()))
        elif action == "disable":
            staff = store.disable(args.staff_id)
        else:
            staff = store.reset(args.staff_id, hashed, role=args.role)
        audit = open_audit(config)
        try:
            audit.sink.record(
                "staff.changed",
                subject={"staff": staff.id},
                details={"operation": action, "role": staff.role},
            )
        finally:
            audit.close()
    finally:
        engine.dispose()
    print(f"staff {staff.id}: {action} done (role {staff.role})")
    return 0


def register_staff_commands(commands: Any) -> None:
    parser = commands.add_parser(
        "staff",
        help="staff accounts of the web console",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="staff_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE", help="TOML configuration (as for serve)")
        p.add_argument("--data-dir", metavar="DIR", help="overrides data_dir (as for serve)")
        p.set_defaults(func=_run, host=None, port=None, json=False)

    add = sub.add_parser("add", help="create an account")
    add.add_argument("staff_id", help="e.g. 'case.officer-1' (lower case, digits, . _ -)")
    add.add_argument("--role", required=True, choices=["reviewer", "signer", "admin"])
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    common(add)
    disable = sub.add_parser("disable", help="disable an account and end its sessions")
    disable.add_argument("staff_id")
    common(disable)
    reset = sub.add_parser(
        "reset", help="set a new password; unlocks and re-enables, ends sessions"
    )
    reset.add_argument("staff_id")
    reset.add_argument(
        "--role", choices=["reviewer", "signer", "admin"], help="change the role too"
    )
    reset.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    common(reset)
    listing = sub.add_parser("list", help="list accounts (id, role, state)")
    common(listing)


__all__ = ["register_staff_commands"]
