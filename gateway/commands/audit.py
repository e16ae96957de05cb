"""``ehds audit``: verify, prove, checkpoint, show and export the signed Merkle audit log.

Every sub-command takes ``--db URL`` (a SQLite path or a PostgreSQL URL),
``--log-id`` (default: the only log in the database) and ``--json``.
``ehds audit verify`` exits 1 when anything is wrong (first bad index and a
reason code on the output), 0 when the whole log verifies.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from audit_chain import EventSigner, TrustStore
from audit_chain.checkpoint import CheckpointVerifier
from audit_chain.errors import AuditConfigError, AuditError
from audit_chain.fhir_export import export_audit_events
from audit_chain.log import AuditLog
from audit_chain.storage import LogStore
from audit_chain.verify import verify_log

EXIT_BAD_LOG = 1


def _open(args: argparse.Namespace, signer: EventSigner | None = None) -> AuditLog:
    store = LogStore(args.db)
    log_id = args.log_id
    if log_id is None:
        ids = store.log_ids()
        if len(ids) > 1:
            store.close()
            raise AuditConfigError(
                f"database holds {len(ids)} logs; pick one with --log-id ({', '.join(ids[:10])})"
            )
        log_id = ids[0] if ids else "default"
    return AuditLog(store, log_id, signer=signer)


def _emit(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(lines))


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode("ascii")


def _cmd_verify(args: argparse.Namespace) -> int:
    trust = TrustStore.load(args.trust)
    with _open(args) as log:
        held = None
        client = None
        if args.checkpoint_state:
            client = CheckpointVerifier(
                trust, log.log_id, log_org=args.log_org, path=args.checkpoint_state
            )
            held = list(client.history)
        report = verify_log(log, trust, trusted=held, log_org=args.log_org)
        data = report.to_json()
        if report.ok and client is not None and log.size() > 0:
            try:
                client.update(log)  # remember the newest checkpoint for the next run
            except AuditError as exc:  # rollback/fork against the saved state
                code = exc.code
                data.update(
                    ok=False, reason=code, index=getattr(exc, "index", None), message=str(exc)
                )
        status = "OK" if data["ok"] else "FAILED"
        lines = [
            f"{status}: log {report.log_id!r}, {report.size} entries, {report.entries_checked} checked"
        ]
        if data["ok"]:
            lines.append(f"root {report.root} (checkpoint size {report.checkpoint_size})")
        else:
            where = "" if data["index"] is None else f" at index {data['index']}"
            lines.append(f"[{data['reason']}]{where}: {data['message']}")
        _emit(args, data, lines)
        return 0 if data["ok"] else EXIT_BAD_LOG


def _cmd_proof(args: argparse.Namespace) -> int:
    with _open(args) as log:
        size = args.size if args.size is not None else log.size()
        if args.index is not None:
            proof = log.inclusion_proof(args.index, size)
            entry = log.entry(args.index)
            data: dict[str, Any] = {
                "kind": "inclusion",
                "log_id": log.log_id,
                "index": args.index,
                "tree_size": size,
                "leaf_hash": _b64(entry.leaf_hash),
                "root": _b64(log.root(size)),
                "proof": [_b64(h) for h in proof],
            }
            head = f"inclusion proof: entry {args.index} in tree of size {size}"
        else:
            if args.first is None:
                raise AuditConfigError("give --index I (inclusion) or --from M (consistency)")
            proof = log.consistency_proof(args.first, size)
            data = {
                "kind": "consistency",
                "log_id": log.log_id,
                "size1": args.first,
                "size2": size,
                "root1": _b64(log.root(args.first)),
                "root2": _b64(log.root(size)),
                "proof": [_b64(h) for h in proof],
            }
            head = f"consistency proof: size {args.first} -> {size}"
        lines = [f"{head} ({len(proof)} hashes, {32 * len(proof)} bytes)", *data["proof"]]
        _emit(args, data, lines)
    return 0


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    signer = EventSigner.load(args.sign) if args.sign else None
    with _open(args, signer) as log:
        if signer is not None:
            cp = log.checkpoint()
        else:
            latest = log.latest_checkpoint()
            if latest is None:
                raise AuditConfigError("log has no checkpoint yet (use --sign KEYFILE to make one)")
            cp = latest
        data = cp.to_json()
        behind = log.size() - cp.size
        data["log_size"] = log.size()
        lines = [
            f"checkpoint of {cp.origin!r}: size {cp.size}, root sha256:{cp.root_hex}",
            f"time {cp.time}, signed by {cp.kid}"
            + (f" ({behind} newer entries not yet covered)" if behind else ""),
            cp.token,
        ]
        _emit(args, data, lines)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as log:
        start = args.index if args.index is not None else args.start
        end = start + (1 if args.index is not None else args.limit)
        rows = list(log.entries(start, end))
        data = {
            "log_id": log.log_id,
            "size": log.size(),
            "entries": [
                {
                    "index": e.index,
                    "type": e.type,
                    "org": e.org,
                    "time": e.time,
                    "leaf_hash": "sha256:" + e.leaf_hash.hex(),
                    **({"jws": e.token} if args.index is not None else {}),
                }
                for e in rows
            ],
        }
        lines = [f"log {log.log_id!r}: {data['size']} entries"]
        lines += [f"{e.index:>8}  {e.time}  {e.type:<22} {e.org}" for e in rows]
        if args.index is not None and rows:
            lines.append(rows[0].token)
        _emit(args, data, lines)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    trust = TrustStore.load(args.trust) if args.trust else None
    with _open(args) as log:
        out = open(args.out, "w", encoding="utf-8") if args.out != "-" else sys.stdout  # noqa: SIM115
        try:
            count = 0
            for resource in export_audit_events(log, start=args.start, end=args.end, trust=trust):
                out.write(json.dumps(resource, separators=(",", ":")) + "\n")
                count += 1
        finally:
            if out is not sys.stdout:
                out.close()
        if args.out != "-":
            _emit(
                args,
                {"exported": count, "out": args.out},
                [f"exported {count} AuditEvent resources to {args.out}"],
            )
    return 0


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="verify, prove and export the signed Merkle audit log",
        description="Inspect and verify an RFC 9162 Merkle audit log of JWS-signed events.",
    )
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", required=True, help="SQLite path or PostgreSQL URL")
        p.add_argument(
            "--log-id", default=None, help="log id (default: the only log in the database)"
        )
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("verify", help="re-verify every signature, the tree and the checkpoints")
    common(p)
    p.add_argument("--trust", required=True, help="trust store JSON ({'keys': [{org, alg, jwk}]})")
    p.add_argument("--log-org", default=None, help="organisation whose keys may sign checkpoints")
    p.add_argument(
        "--checkpoint-state",
        default=None,
        help="file holding checkpoints accepted before: detects rollback and forks across runs",
    )
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "proof", help="inclusion proof for an index or consistency proof between sizes"
    )
    common(p)
    p.add_argument("--index", type=int, default=None, help="entry index (inclusion proof)")
    p.add_argument(
        "--from", dest="first", type=int, default=None, help="older tree size (consistency proof)"
    )
    p.add_argument(
        "--size", "--to", dest="size", type=int, default=None, help="tree size (default: current)"
    )
    p.set_defaults(func=_cmd_proof)

    p = sub.add_parser("checkpoint", help="show the newest signed checkpoint (or sign one)")
    common(p)
    p.add_argument(
        "--sign", default=None, help="log signing key file: sign a checkpoint of the current size"
    )
    p.set_defaults(func=_cmd_checkpoint)

    p = sub.add_parser("show", help="list entries (type, org, time, leaf hash)")
    common(p)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--index", type=int, default=None, help="show one entry with its JWS")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("export-fhir", help="entries as FHIR R4 AuditEvent NDJSON")
    common(p)
    p.add_argument("--trust", default=None, help="verify each signature before exporting")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--end", type=int, default=None)
    p.add_argument("--out", default="-", help="output file (default: stdout)")
    p.set_defaults(func=_cmd_export)
