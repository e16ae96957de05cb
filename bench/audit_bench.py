"""Audit chain benchmark: signed appends/s, proof time and size, full verification.

For SQLite and PostgreSQL it prints

* signed appends per second, batched (one transaction + one checkpoint per
  batch) and single (one transaction + checkpoint per event), against the
  baseline of signing alone in the same process;
* inclusion/consistency proof generation time and size at n = 1e3 / 1e5 / 1e6
  (trees bulk-built with ``merkle.extend``; proofs read O(log n) stored nodes),
  against the same proofs from an in-memory node dict;
* full ``verify_log`` time for 1e5 signed entries, against bare signature
  verification of the same tokens;
* signed appends per second with witnessing on (3 C2SP witnesses on loopback
  aiohttp servers, cosignatures collected in the background) beside witnessing
  off, in the same run (target: >= 80 % of off and >= 2,000/s), and the
  cosignatures per second one witness serves (add-checkpoint with consistency
  proofs, 4 logs submitting concurrently over keep-alive connections).

``--quick``: 2,000 entries and trees of 1e3 / 1e4. The last line is one JSON object.

    .venv/bin/python bench/audit_bench.py --quick [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit_chain import EventSigner, TrustStore, merkle
from audit_chain.events import sign_event, verify_event
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink
from audit_chain.storage import LogStore
from audit_chain.verify import verify_log

TARGET_APPENDS_PER_S = 2000
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def row(label: str, value: str, ratio: str = "") -> None:
    print(f"  {label:<46} {value:>16}  {ratio}")


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def calibration_ms() -> float:
    """A fixed pure-Python workload: how loaded this (shared) machine is right now.

    ~15 ms on an idle modern core; figures scale roughly with it.
    """
    t = time.perf_counter()
    x = 0
    for i in range(200_000):
        x += i * i
    return (time.perf_counter() - t) * 1000


def events(actor: EventSigner, n: int) -> list[dict[str, Any]]:
    return [
        {"type": "training.round", "subject": {"job": "job-1", "site": "site-a"},
         "details": {"round": i % 50, "rows": 1000 + i, "model_hash": "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()}}
        for i in range(n)
    ]  # fmt: skip


def bench_appends(
    url: str, n: int, batch: int, log_key: EventSigner, actor: EventSigner
) -> dict[str, Any]:
    specs = events(actor, n)
    t = time.perf_counter()
    for i, s in enumerate(specs[: min(n, 2000)]):
        sign_event(
            actor, s["type"], subject=s["subject"], details=s["details"], origin="b", index=i
        )
    sign_rate = min(n, 2000) / (time.perf_counter() - t)

    log = AuditLog.open(url, log_id="bench-append", signer=log_key)
    sink = SignedLogSink(log, actor)
    t = time.perf_counter()
    for i in range(0, n, batch):
        with sink.batch():
            for s in specs[i : i + batch]:
                sink.record(s["type"], subject=s["subject"], details=s["details"])
    batched = n / (time.perf_counter() - t)
    single_n = min(300, n)
    t = time.perf_counter()
    for s in specs[:single_n]:
        sink.record(s["type"], subject=s["subject"], details=s["details"])
    single = single_n / (time.perf_counter() - t)
    row("sign only (baseline), events/s", f"{sign_rate:,.0f}")
    row(
        f"signed appends/s, batches of {batch}",
        f"{batched:,.0f}",
        f"x{batched / sign_rate:.2f} of signing alone",
    )
    row(
        "signed appends/s, one transaction each",
        f"{single:,.0f}",
        f"x{single / sign_rate:.2f} of signing alone",
    )
    log.close()
    return {"sign_only_per_s": round(sign_rate), "appends_per_s_batched": round(batched),
            "appends_per_s_single": round(single), "batch": batch, "appended": n + single_n}  # fmt: skip


def bulk_tree(store: LogStore, log_id: str, n: int) -> float:
    """Bulk-build the node table of an n-leaf tree (no entries: proofs only need nodes)."""
    t = time.perf_counter()
    frontier: dict[int, bytes] = {}
    leaves = (hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n))
    nodes = merkle.extend(0, frontier, leaves)
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if store.dialect == "sqlite":
            cur.executemany(
                "INSERT INTO audit_node (log_id, level, idx, hash) VALUES (?, ?, ?, ?)",
                ((log_id, lv, ix, h) for lv, ix, h in nodes),
            )
            cur.execute("INSERT INTO audit_log (log_id, size) VALUES (?, ?)", (log_id, n))
        else:
            with cur.copy("COPY audit_node (log_id, level, idx, hash) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for lv, ix, h in nodes:
                    copy.write_row((log_id, lv, ix, h))
            cur.execute("INSERT INTO audit_log (log_id, size) VALUES (%s, %s)", (log_id, n))
        raw.commit()
    finally:
        raw.close()
    # settle statistics and (on PostgreSQL) hint bits, as autovacuum would on a live log
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(
            "VACUUM ANALYZE audit_node" if store.dialect == "postgresql" else "ANALYZE"
        )
    return time.perf_counter() - t


def bench_proofs(store: LogStore, sizes: list[int], reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = random.Random(7)
    for n in sizes:
        log_id = f"bench-proof-{n}"
        build_s = bulk_tree(store, log_id, n)
        log = AuditLog(store, log_id)
        root = log.root(n)
        idx = [rng.randrange(n) for _ in range(reps)]
        old = [rng.randrange(1, n) for _ in range(reps)]
        t = time.perf_counter()
        proofs = [log.inclusion_proof(i, n) for i in idx]
        inc_ms = (time.perf_counter() - t) / reps * 1000
        t = time.perf_counter()
        cproofs = [log.consistency_proof(m, n) for m in old]
        con_ms = (time.perf_counter() - t) / reps * 1000
        for i, p in zip(idx[:20], proofs[:20], strict=True):
            leaf = hashlib.sha256(i.to_bytes(8, "big")).digest()
            merkle.verify_inclusion(leaf, i, n, p, root)
        bound = 32 * math.ceil(math.log2(n))  # inclusion; consistency may need one hash more
        inc_bytes = max(32 * len(p) for p in proofs)
        con_bytes = max(32 * len(p) for p in cproofs)
        # baseline: the same proofs from an in-memory dict of the same nodes (n <= 1e5 only)
        mem_ms = None
        if n <= 100_000:
            mem = merkle.MemoryNodes()
            mem.append(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n))
            t = time.perf_counter()
            for i in idx:
                merkle.inclusion_proof(i, n, mem)
            mem_ms = (time.perf_counter() - t) / reps * 1000
        ratio = f"x{inc_ms / mem_ms:.1f} of in-memory" if mem_ms else ""
        row(f"n={n:,}: tree bulk build", f"{build_s:.2f} s")
        row(f"n={n:,}: inclusion proof", f"{inc_ms:.3f} ms", ratio)
        row(f"n={n:,}: consistency proof", f"{con_ms:.3f} ms")
        row(
            f"n={n:,}: inclusion / consistency proof bytes (max)",
            f"{inc_bytes} / {con_bytes} B",
            f"bound {bound} / {bound + 32} B",
        )
        assert inc_bytes <= bound, "inclusion proof larger than 32*ceil(log2 n)"
        assert con_bytes <= bound + 32, "consistency proof larger than 32*(ceil(log2 n)+1)"
        out[str(n)] = {"build_s": round(build_s, 3), "inclusion_ms": round(inc_ms, 4), "consistency_ms": round(con_ms, 4),
                       "inclusion_bytes_max": inc_bytes, "consistency_bytes_max": con_bytes, "bound_bytes": bound,
                       "in_memory_inclusion_ms": None if mem_ms is None else round(mem_ms, 4)}  # fmt: skip
    return out


def bench_verify(
    url: str, n: int, log_key: EventSigner, actor: EventSigner, trust: TrustStore
) -> dict[str, Any]:
    log = AuditLog.open(url, log_id="bench-verify", signer=log_key)
    sink = SignedLogSink(log, actor)
    specs = events(actor, n)
    for i in range(0, n, 1000):
        with sink.batch():
            for s in specs[i : i + 1000]:
                sink.record(s["type"], subject=s["subject"], details=s["details"])
    tokens = [e.token for e in log.entries(0, min(n, 10_000))]  # long baseline: noisy host
    t = time.perf_counter()
    for tok in tokens:
        verify_event(tok, trust)
    bare = len(tokens) / (time.perf_counter() - t)
    t = time.perf_counter()
    report = verify_log(log, trust)
    secs = time.perf_counter() - t
    assert report.ok, report
    rate = n / secs
    row(
        f"verify_log of {n:,} entries",
        f"{secs:.2f} s",
        f"{rate:,.0f}/s = x{rate / bare:.2f} of bare signature checks",
    )
    log.close()
    return {
        "verify_entries": n,
        "verify_s": round(secs, 3),
        "verify_per_s": round(rate),
        "bare_verify_per_s": round(bare),
    }


@contextmanager
def witness_processes(tmp: Path, log_vkey: str, n: int = 3) -> Iterator[list[str]]:
    """``n`` witnesses as separate ``ehds witness serve`` processes on loopback (other organisations).

    Yields ``"<vkey> <url>"`` lines; every process is stopped on exit.
    """
    import subprocess

    (tmp / "logs.vkeys").write_text(log_vkey + "\n")
    procs = []
    try:
        for i in range(n):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gateway",
                        "witness",
                        "serve",
                        "--db",
                        str(tmp / f"witness-{i}.db"),
                        "--key",
                        str(tmp / f"witness-{i}.jwk"),
                        "--name",
                        f"w{i}.bench/witness",
                        "--logs",
                        str(tmp / "logs.vkeys"),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=Path(__file__).resolve().parent.parent,
                )
            )
        lines = []
        for proc in procs:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            lines.append(f"{info['vkey']} {info['url']}")
        yield lines
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def bench_witnessing(
    url: str, tmp: Path, n: int, batch: int, log_key: EventSigner, actor: EventSigner
) -> dict[str, Any]:
    from audit_chain.checkpoint import log_verifier
    from gateway.witnessing import WitnessEndpoint, Witnessing

    specs = events(actor, n)
    reps = 4  # off and on interleaved: a shared, loaded host moves both alike

    def run(log: AuditLog, part: int) -> float:
        sink = SignedLogSink(log, actor)
        chunk = specs[part * n // reps : (part + 1) * n // reps]
        t = time.perf_counter()
        for i in range(0, len(chunk), batch):
            with sink.batch():
                for s in chunk[i : i + batch]:
                    sink.record(s["type"], subject=s["subject"], details=s["details"])
        return len(chunk) / (time.perf_counter() - t)

    origin = "bench-witness-on"
    offs: list[float] = []
    ons: list[float] = []
    with witness_processes(tmp, log_verifier(log_key, origin).vkey()) as lines:
        off_log = AuditLog.open(url, log_id="bench-witness-off", signer=log_key)
        on_log = AuditLog.open(url, log_id=origin, signer=log_key)
        witnessing = Witnessing(on_log, [WitnessEndpoint.parse(line) for line in lines]).start()
        witnessing.flush(30)  # connections up before timing
        for part in range(reps):
            offs.append(run(off_log, part))
            ons.append(run(on_log, part))
        t = time.perf_counter()
        all_cosigned = witnessing.flush(60)
        catch_up = time.perf_counter() - t
        rounds = min(st.cosignatures for st in witnessing.status().values())
        witnessing.close()
        on_log.close()
        off_log.close()
    off, on = max(offs), max(ons)  # best of the interleaved runs: least disturbed by neighbours
    median_ratio = sorted(o / f for o, f in zip(ons, offs, strict=True))[reps // 2]
    row(f"signed appends/s, batches of {batch}, witnessing off", f"{off:,.0f}")
    row(
        "signed appends/s, same, 3 witnesses on loopback",
        f"{on:,.0f}",
        f"x{on / off:.2f} of off, best of {reps} interleaved (median pair x{median_ratio:.2f}; "
        f"target >= 0.80 and >= {TARGET_APPENDS_PER_S:,}/s)",
    )
    row("  witnesses cosigned the final size", "yes" if all_cosigned else "NO",
        f"{catch_up * 1000:.0f} ms after the last append, {rounds} rounds per witness")  # fmt: skip
    return {"appends_per_s_witness_off": round(off), "appends_per_s_witness_on": round(on),
            "witness_on_ratio": round(on / off, 3), "witness_median_pair_ratio": round(median_ratio, 3),
            "witness_all_cosigned": all_cosigned,
            "witness_rounds": rounds,
            "witness_meets_target": on >= 0.8 * off and on >= TARGET_APPENDS_PER_S}  # fmt: skip


def bench_cosign_rate(tmp: Path, per_log: int, logs: int = 4) -> dict[str, Any]:
    """Cosignatures/s one witness serves: successive checkpoints of ``logs`` logs, with proofs."""
    import asyncio

    import aiohttp

    import trust
    from audit_chain.checkpoint import log_verifier, sign_checkpoint
    from audit_chain.witness import add_checkpoint_request
    from gateway.witness_wiring import WitnessServers, witness_for

    key = EventSigner.generate("bench-log")
    origins = [f"bench-log-{i}" for i in range(logs)]
    nodes = merkle.MemoryNodes()
    nodes.append(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(per_log))
    bodies: dict[str, list[bytes]] = {}
    for origin in origins:
        out = []
        for size in range(1, per_log + 1):
            cp = sign_checkpoint(key, origin, size, merkle.root_hash(size, nodes))
            proof = merkle.consistency_proof(size - 1, size, nodes) if size > 1 else []
            out.append(add_checkpoint_request(size - 1, proof, cp.note))
        bodies[origin] = out
    store = LogStore(tmp / "cosign-witness.db")
    wkey = trust.SigningKey.generate("EdDSA", uses=[trust.KeyUse.WITNESS]).private_jwk()
    witness = witness_for("w.bench/witness", wkey, store,
                          [log_verifier(key, o) for o in origins])  # fmt: skip

    async def submit(base: str) -> int:
        ok = 0
        async with aiohttp.ClientSession() as session:

            async def one_log(origin: str) -> int:
                done = 0
                for body in bodies[origin]:
                    async with session.post(f"{base}/add-checkpoint", data=body) as resp:
                        await resp.read()
                        done += resp.status == 200
                return done

            for n in await asyncio.gather(*(one_log(o) for o in origins)):
                ok += n
        return ok

    with WitnessServers([witness]) as (base,):
        t = time.perf_counter()
        ok = asyncio.run(submit(base))
        secs = time.perf_counter() - t
    store.close()
    rate = ok / secs
    row(f"cosignatures/s one witness serves ({logs} logs)", f"{rate:,.0f}",
        f"{ok} of {logs * per_log} cosigned, SQLite state")  # fmt: skip
    assert ok == logs * per_log, "the witness refused a valid checkpoint"
    return {"cosignatures_per_s": round(rate), "cosignatures": ok}


def run_backend(
    name: str, url: str, args: argparse.Namespace, keys: tuple[EventSigner, EventSigner, TrustStore]
) -> dict[str, Any]:
    log_key, actor, trust = keys
    print(f"\n[{name}]")
    result: dict[str, Any] = {}
    result.update(bench_appends(url, args.appends, args.batch, log_key, actor))
    store = LogStore(url)
    result["proofs"] = bench_proofs(store, args.sizes, args.reps)
    store.close()
    result.update(bench_verify(url, args.verify, log_key, actor, trust))
    with tempfile.TemporaryDirectory() as tmp:
        result.update(
            bench_witnessing(url, Path(tmp), args.appends, args.witness_batch, log_key, actor)
        )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small run")
    ap.add_argument("--pg", default=os.environ.get("EHDS_TEST_DATABASE_URL", DEFAULT_PG))
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args(argv)
    args.appends = 2000 if args.quick else 20_000
    args.verify = 2000 if args.quick else 100_000
    args.sizes = [1000, 10_000] if args.quick else [1000, 100_000, 1_000_000]
    args.reps = 200 if args.quick else 500
    args.witness_batch = 100
    log_key = EventSigner.generate("bench-log")
    actor = EventSigner.generate("bench-actor")
    keys = (log_key, actor, TrustStore([log_key.trusted_key(), actor.trusted_key()]))
    cal = calibration_ms()
    print(
        f"audit_chain benchmark ({'quick' if args.quick else 'full'}), cpus={os.cpu_count()}, "
        f"calibration {cal:.0f} ms (idle core ~15 ms)"
    )
    results: dict[str, Any] = {
        "bench": "audit_chain",
        "quick": args.quick,
        "calibration_ms": round(cal, 1),
        "target_appends_per_s": TARGET_APPENDS_PER_S,
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run_backend("sqlite", str(Path(tmp) / "bench.db"), args, keys)
    if args.no_pg:
        results["postgresql"] = None
    else:
        try:
            with pg_schema(args.pg) as url:
                results["postgresql"] = run_backend("postgresql", url, args, keys)
        except Exception as exc:  # PostgreSQL not reachable: say so, keep the SQLite figures
            print(f"\n[postgresql] skipped: {type(exc).__name__}: {str(exc)[:200]}")
            results["postgresql"] = None
    results["sqlite_meets_target"] = (
        results["sqlite"]["appends_per_s_batched"] >= TARGET_APPENDS_PER_S
    )
    print("\n[witness]")
    with tempfile.TemporaryDirectory() as tmp:
        results["witness"] = bench_cosign_rate(Path(tmp), 250 if args.quick else 2500)
    results["calibration_ms_end"] = round(calibration_ms(), 1)
    print(json.dumps(results, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
