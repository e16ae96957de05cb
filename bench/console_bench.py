"""Page load times of the staff console with 10,000 applications and 10,000 permits stored.

    python bench/console_bench.py            # 10,000 of each, 3,000 audit entries, 40 loads per page
    python bench/console_bench.py --quick    # 10,000 of each, 500 audit entries, 10 loads per page

The HDAB app (with the console) runs in this process on 127.0.0.1 with SQLite files,
as ``ehds hdab serve`` builds it. Applications and permits are bulk-inserted rows
(copies of one really signed permit, each with its own id): issuing 10,000 permits
one by one would publish 10,000 status lists and measure that instead. A signed-in
staff client loads each page in turn; the baseline is ``/health`` on the same server.
Target: each page in <= 200 ms (median); printed, never asserted. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_MS = 200.0
PASSWORD = "bench password, long enough"


def _fill(hdab: Any, n: int, now: int) -> tuple[str, str]:
    """``n`` applications (a quarter pending) and ``n`` permits; returns one of each id."""
    from sqlalchemy import insert
    from sqlmodel import Session

    from permits.hdab import ApplicationRow, PermitRow
    from tests.gateway.conftest import application_body

    user, person = _keys()
    body = application_body(user, person)
    record = hdab.apply(body)
    hdab.approve(record.id)
    issued = hdab.issue(record.id)
    sample = hdab.engine
    with Session(sample) as s:
        app_row = s.get(ApplicationRow, record.id)
        permit_row = s.get(PermitRow, (issued.jti, 1))
        assert app_row is not None and permit_row is not None
        a, p = app_row.model_dump(), permit_row.model_dump()
    apps, permits = [], []
    for i in range(n):
        status = ("pending", "approved", "refused", "issued")[i % 4]
        apps.append(
            {
                **a,
                "id": f"app-bench-{i:06d}",
                "status": status,
                "created_at": now - i * 60,
                "jti": f"permit-bench-{i:06d}" if status == "issued" else None,
            }
        )
        permits.append(
            {
                **p,
                "jti": f"permit-bench-{i:06d}",
                "application_id": f"app-bench-{i:06d}",
                "iat": now - i * 60,
                "nbf": now - i * 60,
                "exp": now + (i % 400) * 86400,
                "status": "revoked" if i % 50 == 0 else "valid",
            }
        )
    with Session(sample) as s:
        s.execute(insert(ApplicationRow), apps)  # type: ignore[arg-type]
        s.execute(insert(PermitRow), permits)  # type: ignore[arg-type]
        s.commit()
    return "app-bench-000000", "permit-bench-000001"


def _keys() -> tuple[Any, Any]:
    from trust import generate_jwk as generate_key

    return generate_key(), generate_key()


def _audit(components: Any, entries: int) -> None:
    sink = components.sink
    inner = getattr(sink, "inner", sink)
    batch = getattr(inner, "batch", None)
    done = 0
    while done < entries:
        k = min(500, entries - done)
        ctx = batch() if batch is not None else _null()
        with ctx:
            for i in range(k):
                inner.record(
                    "staff.signed_in" if i % 3 else "permit.approved",
                    subject={"staff": "rita"} if i % 3 else {"application": f"app-{done + i}"},
                    details={"role": "reviewer"} if i % 3 else {"reason": "approved"},
                )
        done += k
    components.view.invalidate()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def run(n: int, audit_entries: int, loads: int) -> dict[str, Any]:
    from aiohttp import CookieJar
    from aiohttp.test_utils import TestClient, TestServer

    from gateway.client_keys import KeyRing
    from gateway.config import load_config
    from gateway.console.passwords import hash_password
    from gateway.console.state import CONSOLE_KEY
    from gateway.hdab_service import create_hdab_app

    tmp = Path(tempfile.mkdtemp(prefix="console-bench-"))
    config = load_config(
        service="hdab",
        env={
            "EHDS_DATA_DIR": str(tmp),
            "EHDS_HDAB_DATABASE": f"sqlite:///{tmp}/hdab.sqlite",
            "EHDS_AUDIT_DATABASE": str(tmp / "audit.sqlite"),
            "EHDS_HDAB_ID": "hdab-bench",
            "EHDS_SERVER_ACCESS_LOG": "false",
        },
    )
    app = create_hdab_app(config, keys=KeyRing())
    state = app[CONSOLE_KEY]
    started = time.perf_counter()
    app_id, jti = _fill(state.hdab, n, state.now())
    _audit(state.audit, audit_entries)
    fill_s = time.perf_counter() - started
    state.store.add_staff("bench", "admin", hash_password(PASSWORD), now=state.now())
    client = TestClient(TestServer(app, host="127.0.0.1"), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    try:
        import re

        page = await (await client.get("/console/login")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        resp = await client.post(
            "/console/login",
            data={"csrf": csrf.group(1), "staff_id": "bench", "password": PASSWORD},
            allow_redirects=False,
        )
        assert resp.status == 303, "sign-in failed"
        pages = {
            "health (baseline)": "/health",
            "dashboard": "/console/",
            "applications": "/console/applications",
            "applications, pending, page 20": "/console/applications?state=pending&page=20",
            "application": f"/console/applications/{app_id}",
            "permits": "/console/permits",
            "permit": f"/console/permits/{jti}",
            "register (public)": "/console/register",
            "register.json (public)": "/console/register.json?page=100",
            "audit log, filtered": "/console/audit?type=permit.&key=application",
            "audit entry + proof": "/console/audit/1",
        }
        results: dict[str, dict[str, float]] = {}
        for name, path in pages.items():
            times = []
            for _ in range(loads):
                t0 = time.perf_counter()
                r = await client.get(path, allow_redirects=False)
                await r.read()
                times.append((time.perf_counter() - t0) * 1000)
                if r.status != 200:
                    raise SystemExit(f"{path}: HTTP {r.status}")
            times.sort()
            results[name] = {
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 2),
            }
    finally:
        await client.close()
    base = results["health (baseline)"]["median_ms"] or 0.01
    print(f"console pages with {n:,} applications, {n:,} permits, {audit_entries:,} audit entries")
    print(
        f"(filled in {fill_s:.1f} s; {loads} loads per page; target median <= {TARGET_MS:.0f} ms)"
    )
    print(f"{'page':34} {'median ms':>10} {'p95 ms':>9} {'x health':>9}  target")
    for name, r in results.items():
        verdict = "ok" if r["median_ms"] <= TARGET_MS else "OVER"
        print(
            f"{name:34} {r['median_ms']:10.2f} {r['p95_ms']:9.2f} {r['median_ms'] / base:9.1f}  {verdict}"
        )
    return {
        "bench": "console",
        "applications": n,
        "permits": n,
        "audit_entries": audit_entries,
        "target_ms": TARGET_MS,
        "pages": results,
        "within_target": all(r["median_ms"] <= TARGET_MS for r in results.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer audit entries and loads")
    args = parser.parse_args()
    audit_entries, loads = (500, 10) if args.quick else (3_000, 40)
    summary = asyncio.run(run(10_000, audit_entries, loads))
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
