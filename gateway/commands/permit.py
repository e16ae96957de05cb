"""``ehds permit``: the HDAB's permit steps from the command line, and offline checks.

``apply``, ``issue`` and ``revoke`` work on the HDAB database (``--db``, SQLite
path or SQLAlchemy URL; PostgreSQL works too) and write each step as a signed
event to the audit log (``--audit``, by default the same database), signed with
the HDAB key. ``issue`` approves a pending application first (an application
the Regulation forbids is refused, with its reason code). ``show`` decodes a
permit without trusting it; ``verify`` checks it the way a data holder does:
trust list, every co-issuer signature, validity with leeway and, with
``--status-list``, revocation. Every sub-command has ``--json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from permits import TrustList
from permits.errors import PermitError, VerificationError
from permits.hdab import HdabService
from permits.reasons import ReasonCode
from permits.statuslist import StatusListStore
from permits.verify import DEFAULT_LEEWAY, PermitVerifier
from trust import load_jwk, parse_jws, sha256_tag

EXIT_INVALID = 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "permit",
        help="apply for, issue, revoke, show and verify EHDS data permits",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="permit_command", metavar="SUBCOMMAND", required=True)

    apply = sub.add_parser("apply", help="file a data access application (Art. 67)")
    _hdab_options(apply)
    apply.add_argument(
        "application", type=Path, help="application JSON (permit body + duration_days)"
    )
    apply.set_defaults(func=cmd_apply)

    issue = sub.add_parser("issue", help="approve (if pending) and issue the signed permit")
    _hdab_options(issue)
    issue.add_argument("application_id")
    issue.add_argument(
        "--cosigner-key", type=Path, action="append", default=[], help="co-issuer private JWK"
    )
    issue.add_argument("--nbf", type=int, help="start of validity (epoch seconds; default now)")
    issue.add_argument("--out", type=Path, help="write the permit token here")
    issue.set_defaults(func=cmd_issue)

    revoke = sub.add_parser(
        "revoke", help="revoke a permit (Art. 63) and publish a new status list"
    )
    _hdab_options(revoke)
    revoke.add_argument("jti")
    revoke.add_argument("--reason", required=True, help="reason code, e.g. breach_of_conditions")
    revoke.set_defaults(func=cmd_revoke)

    show = sub.add_parser(
        "show", help="decode a permit (NOT verified), or read it from the HDAB database"
    )
    show.add_argument("token", nargs="?", type=Path, help="permit token file ('-' for stdin)")
    show.add_argument("--db", help="HDAB database (with --jti, --register or --status-list)")
    show.add_argument("--jti", help="permit id to read from --db")
    show.add_argument("--register", action="store_true", help="print the public register (Art. 57)")
    show.add_argument(
        "--status-list", action="store_true", help="print the latest signed status list"
    )
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)

    verify = sub.add_parser("verify", help="verify a permit as a data holder would")
    verify.add_argument("token", type=Path, help="permit token file ('-' for stdin)")
    verify.add_argument("--trust", type=Path, required=True, help="trust list of HDAB keys (JSON)")
    verify.add_argument(
        "--status-list",
        type=Path,
        action="append",
        help="signed status list token file (repeat for each co-issuing HDAB's list)",
    )
    verify.add_argument(
        "--no-status",
        action="store_true",
        help="do not check revocation (the answer then says so); otherwise --status-list is required",
    )
    verify.add_argument(
        "--max-age", type=int, default=3600, help="maximum status list age, seconds"
    )
    verify.add_argument("--holder", help="data holder id that must be named in the permit")
    verify.add_argument("--leeway", type=int, default=DEFAULT_LEEWAY, help="clock leeway, seconds")
    verify.add_argument("--at", type=int, help="verify at this time instead of now (epoch seconds)")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)

    cosign = sub.add_parser(
        "cosign", help="add a co-issuing HDAB's signature to a lead-signed permit (cross-border)"
    )
    cosign.add_argument("token", type=Path, help="lead-signed permit file ('-' for stdin)")
    cosign.add_argument("--key", type=Path, required=True, help="this HDAB's private JWK")
    cosign.add_argument("--out", type=Path, help="write the co-signed token here (else stdout)")
    cosign.set_defaults(func=cmd_cosign)


def cmd_cosign(args: argparse.Namespace) -> int:
    """Sign the same payload with ``--key`` and append the signature (the payload is unchanged)."""
    from permits.signing import cosign_permit

    token = cosign_permit(_read(args.token).strip(), load_jwk(args.key))
    if args.out:
        args.out.write_text(token, encoding="utf-8")
    else:
        print(token)
    return 0


def _hdab_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db", default=os.environ.get("EHDS_HDAB_DB", "hdab.sqlite"), help="HDAB database"
    )
    p.add_argument(
        "--audit", help="audit log database (default: <db>.audit.sqlite for SQLite, else --db)"
    )
    p.add_argument(
        "--hdab-id", default=os.environ.get("EHDS_HDAB_ID"), help="HDAB identifier (iss)"
    )
    p.add_argument(
        "--country", default=os.environ.get("EHDS_HDAB_COUNTRY"), help="HDAB country code"
    )
    p.add_argument("--key", type=Path, default=_env_path("EHDS_HDAB_KEY"), help="HDAB private JWK")
    p.add_argument("--json", action="store_true")


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _url(value: str) -> str:
    if "://" in value:
        return value
    path = Path(value).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _audit_url(db: str) -> str:
    """SQLite allows one writer per file and each HDAB step writes the audit event
    inside its own transaction, so a SQLite audit log lives in its own file."""
    if db.startswith("sqlite:///"):
        return db + ".audit.sqlite"
    return db


class _LogSink:
    """``audit_chain.sink.SignedLogSink`` on the HDAB's audit log, signed with the HDAB key."""

    def __init__(self, url: str, org: str, key_path: Path) -> None:
        from audit_chain import EventSigner
        from audit_chain.log import AuditLog
        from audit_chain.sink import SignedLogSink

        signer = EventSigner(org, orjson.loads(key_path.read_bytes()))
        self.log = AuditLog.open(url, log_id="hdab", signer=signer)
        self.sink = SignedLogSink(self.log, signer)

    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        self.sink.record(type, subject=subject, details=details)

    def close(self) -> None:
        self.log.close()


def _service(args: argparse.Namespace) -> tuple[HdabService, _LogSink]:
    if not args.hdab_id or not args.country or not args.key:
        raise PermitError(
            "--hdab-id, --country and --key are required (or EHDS_HDAB_ID/_COUNTRY/_KEY)"
        )
    db = _url(args.db)
    sink = _LogSink(_url(args.audit) if args.audit else _audit_url(db), args.hdab_id, args.key)
    key = load_jwk(args.key)
    if not key.has_private:
        raise PermitError("--key must be a private JWK", code="PERMIT_KEY_ERROR")
    return HdabService(db, hdab_id=args.hdab_id, country=args.country, key=key, sink=sink), sink


def _emit(args: argparse.Namespace, data: Mapping[str, Any], lines: list[str]) -> None:
    if args.json:
        sys.stdout.write(orjson.dumps(dict(data)).decode() + "\n")
    else:
        for line in lines:
            print(line)


def _read(path: Path) -> str:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PermitError(f"cannot read {path}: {type(exc).__name__}") from None
    return text.strip()


def cmd_apply(args: argparse.Namespace) -> int:
    try:
        body = orjson.loads(args.application.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise PermitError(
            f"cannot read application: {type(exc).__name__}", code="PERMIT_INVALID"
        ) from None
    service, sink = _service(args)
    try:
        record = service.apply(body)
    finally:
        sink.close()
    _emit(
        args,
        {
            "application": record.id,
            "status": record.status,
            "application_hash": record.application_hash,
        },
        [
            f"application: {record.id}",
            f"status: {record.status}",
            f"hash: {record.application_hash}",
        ],
    )
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    service, sink = _service(args)
    try:
        record = service.application(args.application_id)
        if record.status == "pending":
            record = service.approve(args.application_id)
        if record.status == "refused":
            _emit(
                args,
                {"application": record.id, "status": "refused", "reason": record.reason},
                [f"application {record.id} refused: {record.reason}"],
            )
            return EXIT_INVALID
        cosigners = [load_jwk(p) for p in args.cosigner_key]
        issued = service.issue(args.application_id, co_signers=cosigners, nbf=args.nbf)
    finally:
        sink.close()
    if args.out:
        args.out.write_text(issued.token + "\n", encoding="utf-8")
    data = {
        "jti": issued.jti,
        "version": issued.version,
        "permit_hash": issued.permit_hash,
        "status_list_version": issued.status_list_version,
    }
    if not args.out:
        data["token"] = issued.token
    lines = [f"{k}: {v}" for k, v in data.items() if k != "token"]
    lines += [f"written to {args.out}"] if args.out else [issued.token]
    _emit(args, data, lines)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    service, sink = _service(args)
    try:
        version = service.revoke(args.jti, args.reason)
    finally:
        sink.close()
    _emit(
        args,
        {
            "jti": args.jti,
            "status": "revoked",
            "reason": args.reason,
            "status_list_version": version,
        },
        [f"revoked {args.jti} ({args.reason}); status list version {version}"],
    )
    return 0


def _decode(token: str) -> dict[str, Any]:
    parsed = parse_jws(token)
    payload = orjson.loads(parsed.payload)
    return {
        "verified": False,
        "serialization": parsed.serialization,
        "headers": [s.header for s in parsed.signatures],
        "permit_hash": sha256_tag(parsed.payload),
        "payload": payload,
    }


def _authorised_app(payload: Mapping[str, Any]) -> str:
    """The code the permit authorises at data holders, for the case officer (issue #20)."""
    processing = payload.get("processing")
    app = processing.get("app") if isinstance(processing, dict) else None
    if not isinstance(app, dict):
        return "authorised app: none named (data holders refuse every Flower deployment run)"
    return (
        f"authorised app: {app.get('digest')}  ClientApp: {app.get('clientapp')}  "
        f"gateway ClientApp version: {app.get('clientapp_version')}"
    )


def cmd_show(args: argparse.Namespace) -> int:
    if args.db and (args.register or args.status_list or args.jti):
        service = HdabService.read_only(_url(args.db))
        if args.register:
            data: dict[str, Any] = service.register()
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        if args.status_list:
            token = service.status_list()
            if token is None:
                raise VerificationError(ReasonCode.STATUS_LIST_MISSING, "nothing published yet")
            _emit(args, {"token": token}, [token])
            return 0
        token = service.permit_token(args.jti)
    elif args.token:
        token = _read(args.token)
    else:
        raise PermitError("give a token file, or --db with --jti/--register/--status-list")
    data = _decode(token)
    if args.json:
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
    else:
        payload = data["payload"]
        print("UNVERIFIED permit (use `ehds permit verify` to check it)")
        print(
            f"jti: {payload.get('jti')}  version: {payload.get('version')}  hash: {data['permit_hash']}"
        )
        print(
            f"issuer: {payload.get('iss')}  signatures: {len(data['headers'])} ({data['serialization']})"
        )
        print(_authorised_app(payload))
        print(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    return 0


class _NoSink:
    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        raise PermitError("read-only")


def cmd_verify(args: argparse.Namespace) -> int:
    if not args.status_list and not args.no_status:
        # a permit is only valid if not revoked: never say VALID without having looked
        raise PermitError(
            "revocation not checked: give --status-list (the HDAB's signed list) or --no-status",
            code="PERMIT_STATUS_REQUIRED",
        )
    trust = TrustList.from_file(args.trust)
    now = float(args.at) if args.at is not None else time.time()
    verifier = PermitVerifier(trust, leeway=args.leeway, clock=lambda: now)
    token = _read(args.token)
    result: dict[str, Any] = {"valid": False}
    try:
        verified = verifier.verify(token, now)
        permit = verified.permit
        result.update(jti=permit.jti, version=permit.version, permit_hash=verified.permit_hash)
        result["signers"] = [s.hdab for s in verified.signers]
        if args.status_list:
            store = StatusListStore(
                trust, max_age=args.max_age, leeway=args.leeway, clock=lambda: now
            )
            for path in args.status_list:
                store.update(_read(path))
            store.check(permit.iss.id, permit.jti, permit.version, verified.permit_hash, now)
            if permit.cross_border is not None:  # every HDAB that signed may have revoked
                for co_issuer in permit.cross_border.co_issuers:
                    store.check_co_issuer(co_issuer, permit.jti, now)
            result["status_checked"] = True
        if args.holder and permit.grant_for(args.holder) is None:
            raise VerificationError(ReasonCode.HOLDER_NOT_NAMED, "data holder not named")
        result.update(valid=True, reason=ReasonCode.OK.value)
    except VerificationError as exc:
        result.update(reason=exc.reason.value, code=exc.code)
    lines = [f"{'VALID' if result['valid'] else 'INVALID'}: {result['reason']}"]
    if "jti" in result:
        lines.append(
            f"jti: {result['jti']}  version: {result['version']}  signers: {', '.join(result['signers'])}"
        )
    if not args.status_list:
        result["status_checked"] = False
        lines.append("note: revocation NOT checked (--no-status): valid only if not revoked")
    _emit(args, result, lines)
    return 0 if result["valid"] else EXIT_INVALID
