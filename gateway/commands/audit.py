"""``ehds audit``: verify, prove, checkpoint, show and export the signed Merkle audit log.

Every sub-command takes ``--db URL`` (a SQLite path or a PostgreSQL URL),
``--log-id`` (default: the only log in the database) and ``--json``. A
database or log that does not exist is an error, never an empty log.

``ehds audit verify`` exits 1 when anything is wrong (first bad index and a
reason code on the output), 0 when the log verifies. ``--log-org`` (whose
keys sign the log's checkpoints) is required, directly or from ``--policy``.
With witnesses (``--witness VKEY`` ... ``--quorum K``, or the policy file) it
reads every cosignature the log stored and what each witness holds
(``--witness-source``: the witness's database or its ``/witness`` URL), and
reports as verified only the entries under a checkpoint ``K`` witnesses
cosigned; ``--require-witnessed`` fails when newer entries exist.

Policy file (JSON)::

    {"log_org": "hospital-a", "quorum": 2,
     "witnesses": ["hdab-ee/witness+1a2b3c4d+BA...", ...],
     "witness_sources": ["sqlite:///.../hdab-ee.sqlite", "http://127.0.0.1:8441/witness"]}
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from audit_chain import EventSigner, TrustStore
from audit_chain.checkpoint import CheckpointVerifier
from audit_chain.errors import AuditConfigError, AuditError
from audit_chain.fhir_export import export_audit_events
from audit_chain.log import AuditLog
from audit_chain.note import parse_vkey
from audit_chain.storage import LogStore
from audit_chain.verify import WitnessPolicy, verify_log

EXIT_BAD_LOG = 1


def _open(args: argparse.Namespace, signer: EventSigner | None = None) -> AuditLog:
    _must_exist(args.db)
    store = LogStore(args.db)
    try:
        if args.log_id is not None and not store.has_log(args.log_id):
            raise AuditConfigError(f"the database holds no log {args.log_id!r}")
        log_id = args.log_id if args.log_id is not None else AuditLog(store).log_id
        return AuditLog(store, log_id, signer=signer)
    except AuditError:
        store.close()
        raise


def _must_exist(url: str) -> None:
    """A SQLite path or URL must name an existing file: opening would create an empty log."""
    if "://" in url and not url.startswith("sqlite:"):
        return
    path = url.split(":///", 1)[1] if url.startswith("sqlite:") else url
    if path in ("", ":memory:") or not Path(path).expanduser().is_file():
        raise AuditConfigError(f"no audit database at {path or url!r}")


def _emit(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(lines))


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode("ascii")


def _policy(args: argparse.Namespace, origin: str) -> tuple[str, WitnessPolicy | None]:
    """``(log_org, witness policy)`` from the policy file and the command line."""
    doc: dict[str, Any] = {}
    if args.policy:
        try:
            doc = json.loads(Path(args.policy).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AuditConfigError(f"cannot read policy {args.policy}") from exc
        if not isinstance(doc, dict):
            raise AuditConfigError("policy must be a JSON object")
    log_org = args.log_org or doc.get("log_org")
    if not isinstance(log_org, str) or not log_org:
        raise AuditConfigError("--log-org is required (or log_org in --policy)")
    vkeys = list(args.witness or []) + list(doc.get("witnesses") or [])
    if not vkeys:
        if args.quorum:
            raise AuditConfigError("--quorum needs trusted witnesses (--witness VKEY)")
        return log_org, None
    quorum = args.quorum or doc.get("quorum") or len(vkeys)
    sources = list(args.witness_source or []) + list(doc.get("witness_sources") or [])
    notes = tuple(n for n in (_witness_note(src, origin) for src in sources) if n is not None)
    try:
        policy = WitnessPolicy(tuple(parse_vkey(v) for v in vkeys), int(quorum), notes)
    except ValueError as exc:
        raise AuditConfigError(str(exc)) from exc
    return log_org, policy


def _witness_note(source: str, origin: str) -> str | None:
    """What one witness holds for ``origin``: from its ``/witness`` URL or its database."""
    if source.startswith(("http://", "https://")):
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"{source.rstrip('/')}/checkpoint?origin={urllib.parse.quote(origin)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return str(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise AuditConfigError(f"witness {source} answered HTTP {exc.code}") from exc
        except OSError as exc:
            raise AuditConfigError(f"witness {source} unreachable") from exc
    _must_exist(source)
    store = LogStore(source)
    try:
        state = store.witness_state(origin)
    finally:
        store.close()
    return None if state is None else state[2]


def _cmd_verify(args: argparse.Namespace) -> int:
    trust = TrustStore.load(args.trust)
    with _open(args) as log:
        log_org, policy = _policy(args, log.log_id)
        held = None
        client = None
        if args.checkpoint_state:
            client = CheckpointVerifier(
                trust, log.log_id, log_org=log_org, path=args.checkpoint_state
            )
            held = list(client.history)
        report = verify_log(log, trust, trusted=held, log_org=log_org, witnesses=policy)
        data = report.to_json()
        if report.ok and args.require_witnessed and (report.verified_size or 0) < report.size:
            data.update(
                ok=False,
                reason="AUDIT_UNWITNESSED",
                index=report.verified_size,
                message=f"entries {report.verified_size}..{report.size - 1} are not yet "
                "cosigned by the witness quorum",
            )
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
            lines.append(report.message)
            for name, size in sorted(report.cosigned.items()):
                lines.append(f"  cosigned by {name} up to size {size}")
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
        cosigs = [ln for s_, _w, _t, ln in log.store.cosignatures(log.log_id) if s_ == cp.size]
        data["cosignatures"] = cosigs
        lines = [
            f"checkpoint of {cp.origin!r}: size {cp.size}, root sha256:{cp.root_hex}"
            + (f" ({behind} newer entries not yet covered)" if behind else ""),
            cp.note.rstrip("\n") + ("\n" + "".join(cosigs).rstrip("\n") if cosigs else ""),
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


def _cmd_witness(args: argparse.Namespace) -> int:
    """Ask the witnesses to cosign the newest checkpoint now (e.g. the coordinator's log, from cron)."""
    from gateway.witnessing import WitnessEndpoint, Witnessing

    try:
        lines = Path(args.witnesses).read_text(encoding="utf-8").splitlines()
        endpoints = [WitnessEndpoint.parse(x) for x in lines if x.strip() and not x.startswith("#")]
    except (OSError, ValueError) as exc:
        raise AuditConfigError(f"cannot read witnesses from {args.witnesses}: {exc}") from exc
    with _open(args) as log:
        witnessing = Witnessing(log, endpoints).start()
        try:
            done = witnessing.flush(args.timeout)
            status = witnessing.status()
        finally:
            witnessing.close()
        size = log.size()
    data = {
        "log_id": log.log_id,
        "size": size,
        "witnesses": {k: {"size": v.size, "error": v.error} for k, v in status.items()},
    }
    lines_out = [f"log {log.log_id!r}: size {size}"] + [
        f"  {k}: cosigned up to {v.size}" + (f" ({v.error})" if v.error else "")
        for k, v in sorted(status.items())
    ]
    _emit(args, data, lines_out)
    return 0 if done else EXIT_BAD_LOG


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
    p.add_argument(
        "--log-org",
        default=None,
        help="organisation whose keys sign the log's checkpoints (required, or from --policy)",
    )
    p.add_argument("--policy", default=None, help="JSON: log_org, witnesses, quorum, sources")
    p.add_argument(
        "--witness", action="append", default=None, metavar="VKEY", help="trusted witness key"
    )
    p.add_argument("--quorum", type=int, default=None, help="witnesses that must cosign (k of n)")
    p.add_argument(
        "--witness-source",
        action="append",
        default=None,
        metavar="DB_OR_URL",
        help="a witness's database or its /witness URL: what it cosigned for this log",
    )
    p.add_argument(
        "--require-witnessed",
        action="store_true",
        help="fail when entries beyond the newest quorum-cosigned checkpoint exist",
    )
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

    p = sub.add_parser("witness", help="ask the witnesses to cosign the newest checkpoint now")
    common(p)
    p.add_argument("--witnesses", required=True, help="file of '<vkey> <url>' lines")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for all")
    p.set_defaults(func=_cmd_witness)

    p = sub.add_parser("export-fhir", help="entries as FHIR R4 AuditEvent NDJSON")
    common(p)
    p.add_argument("--trust", default=None, help="verify each signature before exporting")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--end", type=int, default=None)
    p.add_argument("--out", default="-", help="output file (default: stdout)")
    p.set_defaults(func=_cmd_export)
