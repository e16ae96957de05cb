"""``ehds hdab application|permit ...``: every step of the HDAB's HTTP API from a shell.

A data user applies and reads its own applications and permits; HDAB staff
approve, refuse, issue, amend and revoke. Each request is signed with the
caller's key (``--key`` or ``$EHDS_CLIENT_KEY``, registered with
``ehds hdab client add``) and sent to ``--url`` (or ``$EHDS_HDAB_URL``).
``permit co-sign`` is local: a co-issuing HDAB adds its signature to a
cross-border permit with its own key, which never reaches the lead HDAB.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.commands._remote import add_remote_options, command, emit, read_json, write_out
from gateway.errors import ValidationError


def _id(value: str) -> str:
    return quote(value, safe="")


async def _apply(c: Any, a: argparse.Namespace) -> Any:
    return await c.post("/applications", read_json(a.file, "an application"))


async def _show_application(c: Any, a: argparse.Namespace) -> Any:
    return await c.get(f"/applications/{_id(a.id)}")


async def _approve(c: Any, a: argparse.Namespace) -> Any:
    return await c.post(f"/applications/{_id(a.id)}/decision", {"decision": "approve"})


async def _refuse(c: Any, a: argparse.Namespace) -> Any:
    body = {"decision": "refuse", "reason": a.reason}
    return await c.post(f"/applications/{_id(a.id)}/decision", body)


async def _issue(c: Any, a: argparse.Namespace) -> Any:
    body: dict[str, Any] = {}
    if a.nbf is not None:
        body["nbf"] = a.nbf
    if a.condition:
        body["conditions"] = list(a.condition)
    issued = await c.post(f"/applications/{_id(a.id)}/permit", body)
    write_out(a.out, str(issued["token"]).encode())
    return issued


async def _show_permit(c: Any, a: argparse.Namespace) -> Any:
    query = f"?version={a.version}" if a.version is not None else ""
    permit = await c.get(f"/permits/{_id(a.jti)}{query}")
    write_out(a.out, str(permit["token"]).encode())
    return permit


async def _amend(c: Any, a: argparse.Namespace) -> Any:
    changes = read_json(a.changes, "permit changes")
    if not isinstance(changes, dict):
        raise ValidationError("the changes file must hold one JSON object")
    issued = await c.post(f"/permits/{_id(a.jti)}/amend", {"changes": changes})
    write_out(a.out, str(issued["token"]).encode())
    return issued


async def _revoke(c: Any, a: argparse.Namespace) -> Any:
    return await c.post(f"/permits/{_id(a.jti)}/revoke", {"reason": a.reason})


async def _register(c: Any, a: argparse.Namespace) -> Any:
    return await c.request("GET", "/register", sign=False)


async def _status_list(c: Any, a: argparse.Namespace) -> Any:
    body = await c.request("GET", "/status-list", sign=False)
    write_out(a.out, str(body["token"]).encode())
    return body


async def _jwks(c: Any, a: argparse.Namespace) -> Any:
    body = await c.request("GET", "/.well-known/jwks.json", sign=False)
    import orjson

    write_out(a.out, orjson.dumps(body, option=orjson.OPT_INDENT_2))
    return body


def _cosign(args: argparse.Namespace) -> int:
    import trust
    from permits import cosign_permit

    token = Path(args.token).read_text(encoding="utf-8").strip()
    key = trust.SigningKey.load_or_create(args.key, uses=[trust.KeyUse.PERMIT], create=False)
    signed = cosign_permit(token, key)
    out: Path = args.out or Path(args.token)
    out.write_text(signed + "\n", encoding="utf-8")
    return emit(args, {"token_file": str(out), "signed": True}, text=f"co-signed: {out}")


def register_hdab_remote(commands: Any) -> None:
    """Add ``application`` and ``permit`` to ``ehds hdab``."""
    app = commands.add_parser("application", help="apply for, read and decide data applications")
    asub = app.add_subparsers(dest="application_command", metavar="COMMAND", required=True)
    p = command(asub, "apply", "hdab", _apply, "file an application (Art. 67) from a JSON file")
    p.add_argument("file", type=Path, help="the application (see docs/examples/)")
    p = command(asub, "show", "hdab", _show_application, "status, reason and permit id")
    p.add_argument("id")
    p = command(asub, "approve", "hdab", _approve, "approve a pending application (HDAB staff)")
    p.add_argument("id")
    p = command(asub, "refuse", "hdab", _refuse, "refuse with a reason code (HDAB staff)")
    p.add_argument("id")
    p.add_argument("--reason", required=True, help="reason code, e.g. purpose_not_allowed")
    command(asub, "list", "hdab", _register, "permits and refusals (the public register)")

    permit = commands.add_parser("permit", help="issue, read, amend, revoke permits over HTTP")
    psub = permit.add_subparsers(dest="permit_command", metavar="COMMAND", required=True)
    p = command(psub, "issue", "hdab", _issue, "issue the signed permit of an approved application")
    p.add_argument("id", help="application id")
    p.add_argument("--nbf", type=int, help="not before (NumericDate)")
    p.add_argument("--condition", action="append", help="a condition (repeat)")
    p.add_argument("--out", type=Path, help="also write the permit token here")
    p = command(psub, "show", "hdab", _show_permit, "the signed permit (holder or HDAB staff)")
    p.add_argument("jti")
    p.add_argument("--version", type=int, help="an earlier version")
    p.add_argument("--out", type=Path, help="also write the permit token here")
    p = command(psub, "amend", "hdab", _amend, "amend: version n+1 (Art. 68(13))")
    p.add_argument("jti")
    p.add_argument("--changes", type=Path, required=True, help="JSON object of top-level fields")
    p.add_argument("--out", type=Path, help="also write the new token here")
    p = command(psub, "revoke", "hdab", _revoke, "revoke (Art. 63); publishes a new status list")
    p.add_argument("jti")
    p.add_argument("--reason", required=True, help="reason code, e.g. breach_of_conditions")
    command(psub, "list", "hdab", _register, "permits and refusals (the public register)")
    p = command(psub, "status-list", "hdab", _status_list, "the newest signed status list")
    p.add_argument("--out", type=Path, help="write the token here (what data holders read)")
    p = command(psub, "jwks", "hdab", _jwks, "the HDAB's public keys")
    p.add_argument("--out", type=Path, help="write the JWKS here")
    cos = psub.add_parser(
        "co-sign", help="add a co-issuing HDAB's signature to a permit token (local)"
    )
    cos.add_argument("token", type=Path, help="file holding the permit token")
    cos.add_argument("--key", type=Path, required=True, help="the co-issuer's private JWK")
    cos.add_argument("--out", type=Path, help="where to write (default: overwrite the input)")
    cos.add_argument("--json", action="store_true", help="print one JSON value")
    cos.set_defaults(func=_cosign)


__all__ = ["add_remote_options", "register_hdab_remote"]
