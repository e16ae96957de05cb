"""Bulk ``$export`` client throughput on loopback, beside reading the same NDJSON from disk.

All rows run in this process on the same resources, so the ratios are
comparable on a noisy shared machine (absolute numbers are not):

* ``disk_read``      - baseline: ``fhir_adapters.stream.iter_path`` over the NDJSON folder
  (the file source ``ehds features --data DIR`` uses);
* ``export_to_disk`` - ``BulkExporter.run``: kick-off, poll, gzip downloads (bounded
  concurrency), line-by-line parse + write, DELETE; the test server runs in a
  thread of this process, so its serialisation and gzip share the CPU (a
  pessimistic loopback figure);
* ``export_stream``  - ``BulkExporter.stream``: the resource stream straight from HTTP, nothing
  on disk;
* ``export_dir_read``- reading the exported folder back with ``read_export_dir``.

Each row also gives the *client's* CPU seconds per 100k resources
(``cpu_s_per_100k``): process CPU time minus the server thread's own CPU clock,
so the test server's serialisation and gzip are not charged to the client
(file writes the client hands to worker threads are).

Usage: ``python bench/export_bench.py [--quick] [--ndjson DIR]`` (without ``--ndjson`` a
synthetic cohort is generated). ``run_export_bench(ndjson_dir) -> dict`` is what
``fhir_bench.py`` calls. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fhir_adapters.quality import QualityReport  # noqa: E402
from fhir_adapters.sources import (  # noqa: E402
    BulkExporter,
    ExportRequest,
    FhirClient,
    read_export_dir,
)
from fhir_adapters.stream import iter_path  # noqa: E402
from fhir_adapters.testing.fhir_test_server import (  # noqa: E402
    ExportBehaviour,
    FhirTestServer,
    ServerConfig,
)


class _ServerThread:
    """The FHIR test server on its own event loop, so client and server do not share a loop."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.base_url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fhir-test-server", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            server = FhirTestServer(self.config)
            self.base_url = await server.start()
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await server.stop()

        asyncio.run(main())

    def __enter__(self) -> _ServerThread:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("test server did not start")
        return self

    def cpu(self) -> float:
        """CPU seconds the server thread has used (its own POSIX thread clock)."""
        ident = self._thread.ident
        if ident is None or not hasattr(time, "pthread_getcpuclockid"):
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(ident))

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def run_export_bench(ndjson_dir: str | Path, *, repeats: int = 1) -> dict[str, Any]:
    """Resources/s through the ``$export`` client on loopback vs reading the same NDJSON from disk."""
    src = Path(ndjson_dir)
    behaviour = ExportBehaviour(polls_before_ready=0, retry_after="0", resources_per_file=5000)
    rows: dict[str, dict[str, float]] = {}
    server_cpu: list[Any] = [lambda: 0.0]

    def best(name: str, fn: Any) -> None:
        for _ in range(repeats):
            cpu0, srv0 = time.process_time(), server_cpu[0]()
            start = time.perf_counter()
            n = fn()
            elapsed = time.perf_counter() - start
            client_cpu = (time.process_time() - cpu0) - (server_cpu[0]() - srv0)
            rate = _rate(n, elapsed)
            if name not in rows or rate > rows[name]["resources_per_s"]:
                rows[name] = {
                    "resources": n,
                    "seconds": round(elapsed, 4),
                    "resources_per_s": round(rate, 1),
                    "cpu_s_per_100k": round(max(0.0, client_cpu) * 100_000 / n, 3) if n else 0.0,
                }

    def disk() -> int:
        return sum(1 for _ in iter_path(src, QualityReport()))

    best("disk_read", disk)
    with (
        _ServerThread(ServerConfig(ndjson_dir=src, export=behaviour)) as server,
        tempfile.TemporaryDirectory(prefix="export-bench-") as tmp,
    ):
        server_cpu[0] = server.cpu
        counter = [0]

        def to_disk() -> int:
            counter[0] += 1
            out = Path(tmp) / f"run{counter[0]}"

            async def go() -> int:
                async with FhirClient(server.base_url) as client:
                    result = await BulkExporter(client).run(ExportRequest(), out)
                    return result.resources

            return asyncio.run(go())

        def stream() -> int:
            async def go() -> int:
                async with FhirClient(server.base_url) as client:
                    return sum([1 async for _ in BulkExporter(client).stream(ExportRequest())])

            return asyncio.run(go())

        best("export_to_disk", to_disk)
        best("export_stream", stream)
        best("export_dir_read", lambda: sum(1 for _ in read_export_dir(Path(tmp) / "run1")))
    base = rows["disk_read"]["resources_per_s"]
    for row in rows.values():
        row["ratio_vs_disk"] = round(row["resources_per_s"] / base, 3) if base else 0.0
    return {
        "bench": "export",
        "resources": int(rows["disk_read"]["resources"]),
        "rows": rows,
        "export_vs_disk": rows["export_to_disk"]["ratio_vs_disk"],
        "client_cpu_s_per_100k": rows["export_to_disk"]["cpu_s_per_100k"],
        "stream_vs_disk": rows["export_stream"]["ratio_vs_disk"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cohort, one repeat")
    parser.add_argument(
        "--ndjson", type=Path, help="folder of NDJSON to serve (default: synthetic)"
    )
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="export-bench-src-") as tmp:
        if args.ndjson is not None:
            src = args.ndjson
        else:
            from fhir_adapters.testing.synthetic import CohortConfig, write_ndjson

            n = 300 if args.quick else 5000
            src = write_ndjson(CohortConfig(n_patients=n, n_sites=1, seed=1), tmp)[0]
        result = run_export_bench(src, repeats=repeats)
    print(
        f"{'row':<16} {'resources':>10} {'seconds':>9} {'res/s':>11} {'vs disk':>8} "
        f"{'cpu s/100k':>11}"
    )
    for name, row in result["rows"].items():
        print(
            f"{name:<16} {int(row['resources']):>10} {row['seconds']:>9.3f} "
            f"{row['resources_per_s']:>11.0f} {row['ratio_vs_disk']:>8.3f} "
            f"{row['cpu_s_per_100k']:>11.3f}"
        )
    print(
        f"client CPU per 100k resources exported to disk: {result['client_cpu_s_per_100k']:.3f} s"
    )
    print(json.dumps(result, separators=(",", ":"), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
