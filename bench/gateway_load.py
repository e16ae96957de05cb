"""Load on the audit endpoints: 200 concurrent clients, checkpoint + inclusion + consistency proofs.

    python bench/gateway_load.py            # 30 s of load on a 20,000-entry log
    python bench/gateway_load.py --quick    # 5 s on 2,000 entries

The HDAB service runs in its own process (``create_hdab_app`` with a real
SQLite audit log, pre-filled with signed events) on 127.0.0.1 only; the
clients run here. First a short baseline against ``/health`` (same server,
same clients, no audit work) measures what the HTTP stack alone sustains on
this machine, so the audit endpoints are reported as a ratio of it: this
machine is shared and noisy, absolute numbers mean little. Any 5xx fails the
run (exit 1). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"  # loopback only, never configurable


def fill_log(data_dir: Path, entries: int) -> None:
    """A real SQLite audit log with ``entries`` signed events, written in batches."""
    from audit_chain.sink import SignedLogSink
    from gateway.audit_backend import signer_for
    from gateway.audit_store import open_stored_audit

    config = _config(data_dir)
    components = open_stored_audit(config, signer_for(config))
    sink = components.sink
    assert isinstance(sink, SignedLogSink)
    done = 0
    while done < entries:
        n = min(1000, entries - done)
        with sink.batch():
            for i in range(n):
                sink.record(
                    "access.allowed",
                    subject={"permit": f"permit-{(done + i) % 97}", "site": "site-a"},
                    details={"reason": "ok", "operation": "train", "rounds_used": (done + i) % 10},
                )
        done += n
    components.close()


def _config(data_dir: Path) -> Any:
    from gateway.config import load_config

    return load_config(
        service="hdab",
        env={
            "EHDS_DATA_DIR": str(data_dir),
            "EHDS_HDAB_ID": "hdab-bench",
            "EHDS_SERVER_ACCESS_LOG": "false",
            "EHDS_SERVER_SHUTDOWN_TIMEOUT": "2",
        },
    )


def serve(data_dir: str, conn: Connection) -> None:
    """Child process: the HDAB service on an ephemeral loopback port until told to stop."""
    from gateway.hdab_service import create_hdab_app
    from gateway.http.server import serve as run

    config = _config(Path(data_dir))
    app = create_hdab_app(config)
    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), stop.set)
        await run(
            app,
            host=HOST,
            port=0,
            shutdown_timeout=2,
            on_ready=lambda h, p: conn.send(p),
            stop=stop,
        )

    asyncio.run(main())


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[int, int] = defaultdict(int)

    def add(self, name: str, seconds: float, status: int) -> None:
        self.latency[name].append(seconds)
        self.status[status] += 1

    @property
    def errors_5xx(self) -> int:
        return sum(n for s, n in self.status.items() if s >= 500)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run_load(
    port: int, clients: int, seconds: float, size: int, mix: str
) -> tuple[Stats, float]:
    import aiohttp

    base = f"http://{HOST}:{port}"
    stats = Stats()
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)

    def request(rng: random.Random) -> tuple[str, str]:
        if mix == "health":
            return "health", "/health"
        pick = rng.random()
        if pick < 1 / 3:
            return "checkpoint", "/audit/checkpoint"
        if pick < 2 / 3:
            return (
                "inclusion",
                f"/audit/proof/inclusion?index={rng.randrange(size)}&tree_size={size}",
            )
        first = rng.randrange(1, size + 1)
        return "consistency", f"/audit/proof/consistency?first={first}&second={size}"

    async def client(seed: int, session: aiohttp.ClientSession) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            name, path = request(rng)
            start = time.perf_counter()
            try:
                async with session.get(base + path) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 599  # a dropped connection counts as a server failure
            stats.add(name, time.perf_counter() - start, status)

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    return stats, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small log, 5 s of load")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--entries", type=int, default=None)
    args = parser.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    entries = args.entries or (2_000 if args.quick else 20_000)
    baseline_seconds = max(1.0, seconds / 5)

    with tempfile.TemporaryDirectory(prefix="ehds-load-") as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        fill_log(data_dir, entries)
        fill_s = time.perf_counter() - t0
        print(
            f"audit log: {entries} signed entries written in {fill_s:.1f} s (SQLite, batches of 1000)"
        )

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(str(data_dir), child), daemon=True)
        proc.start()
        try:
            if not parent.poll(60):
                raise SystemExit("server did not start within 60 s")
            port = int(parent.recv())
            # warm up caches and connections, then the baseline, then the audit mix
            asyncio.run(run_load(port, 10, 0.5, entries + 1, "health"))
            size = orjson.loads(_get(port, "/audit/checkpoint"))["size"]
            base_stats, base_elapsed = asyncio.run(
                run_load(port, args.clients, baseline_seconds, size, "health")
            )
            stats, elapsed = asyncio.run(run_load(port, args.clients, seconds, size, "audit"))
        finally:
            parent.send(b"stop")
            proc.join(timeout=15)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)

    base_n = sum(len(v) for v in base_stats.latency.values())
    base_rps = base_n / base_elapsed
    total = sum(len(v) for v in stats.latency.values())
    rps = total / elapsed
    every = [x for v in stats.latency.values() for x in v]
    print(
        f"\n{args.clients} concurrent clients on {HOST}:{port}, tree size {size}, {seconds:.0f} s\n"
    )
    print(
        f"{'endpoint':<14}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs /health':>12}"
    )
    print(
        f"{'health (base)':<14}{base_n:>10}{base_rps:>10.0f}{pct(base_stats.latency['health'], 0.5):>9.1f}"
        f"{pct(base_stats.latency['health'], 0.99):>9.1f}{1.0:>11.2f}x"
    )
    per: dict[str, Any] = {}
    for name in ("checkpoint", "inclusion", "consistency"):
        lat = stats.latency.get(name, [])
        share = len(lat) / elapsed
        per[name] = {
            "requests": len(lat),
            "p50_ms": round(pct(lat, 0.5), 2),
            "p99_ms": round(pct(lat, 0.99), 2),
        }
        print(
            f"{name:<14}{len(lat):>10}{share:>10.0f}{pct(lat, 0.5):>9.1f}{pct(lat, 0.99):>9.1f}{'':>12}"
        )
    ratio = rps / base_rps if base_rps else float("nan")
    print(
        f"{'all audit':<14}{total:>10}{rps:>10.0f}{pct(every, 0.5):>9.1f}{pct(every, 0.99):>9.1f}{ratio:>11.2f}x"
    )
    print(f"\nstatus codes: {dict(sorted(stats.status.items()))}; 5xx: {stats.errors_5xx}")
    result = {
        "bench": "gateway_load",
        "quick": args.quick,
        "clients": args.clients,
        "seconds": seconds,
        "tree_size": size,
        "requests": total,
        "rps": round(rps, 1),
        "p50_ms": round(pct(every, 0.5), 2),
        "p99_ms": round(pct(every, 0.99), 2),
        "errors_5xx": stats.errors_5xx + base_stats.errors_5xx,
        "baseline_health_rps": round(base_rps, 1),
        "ratio_vs_health": round(ratio, 3),
        "endpoints": per,
        "cpu_count": os.cpu_count(),
    }
    print(orjson.dumps(result).decode())
    return 1 if result["errors_5xx"] else 0


def _get(port: int, path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as resp:
        return bytes(resp.read())


if __name__ == "__main__":
    sys.exit(main())
