"""Permit verification throughput: raw jwcrypto vs strict cold vs guard with a cached permit.

All rows use the same signed permit(s) and run in this process, so ratios are
comparable even on a noisy shared machine. Rows:

* ``raw_jwcrypto``   - jwcrypto ``JWS.deserialize`` + ``verify`` with the HDAB key (baseline:
  one signature, no policy at all; for a co-signed token it would pass on ANY signature);
* ``verify_cold``    - ``PermitVerifier.verify``: strict header policy, every signature,
  strict payload model, key windows, validity with leeway (no cache);
* ``permit_cached``  - what the guard does for a permit it has verified before: cache lookup,
  key windows, validity, status list check;
* ``guard_cold``     - a full ``PermitGuard.decide`` with the cache cleared (permit + request
  proof signature + replay + bounds), audit to a null sink;
* ``guard_cached``   - the same decision with the verified permit cached (one signature left:
  the request proof).

Revocation latency (``revocation_push`` / ``revocation_poll``): the HDAB service and a
hospital gateway as aiohttp servers on loopback; each of >= 20 permits is revoked over
HTTP and the time until the gateway holds the list that revokes it is measured
(p50/p99), once with the HDAB pushing and once with the gateway polling every second
(conditional GET) and no push.

Usage: ``python bench/permit_bench.py [--quick]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from jwcrypto.jws import JWS

from permits import TrustList, trusted_key
from permits.audit import NullSink
from permits.guard import AccessRequest, PermitGuard
from permits.hdab import HdabService
from permits.request import AccessParams, make_request
from permits.statuslist import StatusListStore
from permits.verify import PermitVerifier
from trust import generate_jwk as generate_key
from trust import thumbprint

SPEC = "sha256:" + "ab" * 32


def _application(org: Any, person: Any, cross_border: bool) -> dict[str, Any]:
    return {
        "holder_of_permit": {
            "id": "org-bench",
            "name": "Bench Research",
            "country": "FI",
            "sector": "private",
            "kid": thumbprint(org),
        },
        "authorised_persons": [{"id": "person-1", "kid": thumbprint(person)}],
        "purpose": {"codes": ["e.ii"], "description": "bench"},
        "data": [
            {
                "holder": f"site-{i}",
                "datasets": ["ds"],
                "feature_spec_hash": SPEC,
                "time_range": {"start": "2020-01-01", "end": "2024-12-31"},
                "form": "pseudonymised",
            }
            for i in range(3)
        ],
        "processing": {
            "operations": ["train", "evaluate"],
            "federated_xgboost": {
                "strategies": ["bagging", "cyclic"],
                "max_rounds": 100_000,
                "max_depth": 6,
                "min_rows_per_site": 10,
                "min_rows_per_leaf": 5,
                "outputs": ["model", "aggregate_metrics"],
            },
        },
        "opt_out": {"applied": True},
        "spe": {"id": "spe-1"},
        "cross_border": {"lead": "hdab-fi", "co_issuers": ["hdab-se"]} if cross_border else None,
        "duration_days": 365,
    }


def _rate(fn: Callable[[int], None], n: int, repeats: int = 3) -> float:
    """Best of ``repeats`` runs of ``n`` calls, in calls per second."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return n / best


def bench(cross_border: bool, n: int) -> dict[str, float]:
    hdab_key, co_key = generate_key(), generate_key()
    person, org = generate_key(), generate_key()
    trust = TrustList(
        [trusted_key(hdab_key, "hdab-fi", "FI"), trusted_key(co_key, "hdab-se", "SE")]
    )
    service = HdabService(
        "sqlite://", hdab_id="hdab-fi", country="FI", key=hdab_key, sink=NullSink()
    )
    record = service.apply(_application(org, person, cross_border))
    service.approve(record.id)
    issued = service.issue(record.id, co_signers=[co_key] if cross_border else [])
    token = issued.token
    status_token = service.status_list()
    assert status_token is not None

    verifier = PermitVerifier(trust)
    store = StatusListStore(trust)
    store.update(status_token)
    if cross_border:  # the co-issuer lists it too: any HDAB that signed may revoke
        co = HdabService("sqlite://", hdab_id="hdab-se", country="SE", key=co_key, sink=NullSink())
        co.record_cosigned(token)
        co_token = co.status_list()
        assert co_token is not None
        store.update(co_token)
    guard = PermitGuard("site-0", verifier, store, NullSink())
    params = AccessParams(spec_hash=SPEC, rows=100)
    total = n * 3 * 2 + 8
    requests = [
        AccessRequest(
            token,
            make_request(
                person,
                permit=issued.jti,
                permit_hash=issued.permit_hash,
                holder="site-0",
                op="evaluate",
                params=params,
            ),
            "evaluate",
            params,
        )
        for _ in range(total)
    ]
    assert guard.decide(requests[-1]).allowed
    verified = guard.verified(token)

    def raw(_: int) -> None:
        jws = JWS()
        jws.deserialize(token)
        jws.verify(hdab_key)

    def cold(_: int) -> None:
        verifier.verify(token)

    def cached(_: int) -> None:
        v = guard.verified(token)
        verifier.check_current(v)
        store.check("hdab-fi", v.permit.jti, v.permit.version, v.permit_hash)
        if cross_border:
            store.check_co_issuer("hdab-se", v.permit.jti)

    it = iter(requests)

    def guard_cold(_: int) -> None:
        guard.clear_cache()
        assert guard.decide(next(it)).allowed

    def guard_cached(_: int) -> None:
        assert guard.decide(next(it)).allowed

    assert verified.permit_hash == issued.permit_hash
    return {
        "raw_jwcrypto": _rate(raw, n),
        "verify_cold": _rate(cold, n),
        "permit_cached": _rate(cached, n * 10),
        "guard_cold": _rate(guard_cold, n),
        "guard_cached": _rate(guard_cached, n),
    }


async def _revocation_latency(push: bool, n: int) -> list[float]:
    import tempfile
    from pathlib import Path

    import orjson
    from aiohttp.test_utils import TestClient, TestServer

    from gateway.client_keys import KeyRing
    from gateway.config import load_config
    from gateway.hdab_service import HDAB_KEY, create_hdab_app
    from gateway.http.client import ServiceClient
    from gateway.node_service import create_node_app
    from gateway.status_sync import SYNC_KEY, StatusSync

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hdab_key, staff, service_key = generate_key(), generate_key(), generate_key()
        (root / "hdab.jwk").write_text(hdab_key.export_private())
        # the HDAB signs its pushes with its service (audit) key, not its permit key
        (root / "hdab-service.jwk").write_text(service_key.export_private())
        (root / "trust.json").write_bytes(
            orjson.dumps(TrustList([trusted_key(hdab_key, "hdab-b", "FI")]).to_dict())
        )
        (root / "fhir").mkdir()
        common = {"EHDS_SERVER_ACCESS_LOG": "false", "EHDS_DATA_DIR": str(root)}
        node_server = TestServer(web_placeholder(), host="127.0.0.1")  # reserves a port
        await node_server.start_server()
        node_url = str(node_server.make_url("")).rstrip("/")
        node_port = node_server.port
        await node_server.close()
        hdab_env = {
            **common,
            "EHDS_HDAB_ID": "hdab-b",
            "EHDS_HDAB_COUNTRY": "FI",
            "EHDS_HDAB_SIGNING_KEY": str(root / "hdab.jwk"),
            "EHDS_AUDIT_SIGNING_KEY": str(root / "hdab-service.jwk"),
            "EHDS_AUDIT_DATABASE": str(root / "hdab-audit.sqlite"),
            "EHDS_HDAB_PUSH_TO": node_url if push else "",
        }
        ring = KeyRing()
        ring.add(staff, org="hdab-b", roles=["hdab_staff"])
        hdab_app = create_hdab_app(load_config(service="hdab", env=hdab_env), keys=ring)
        hdab_client = TestClient(TestServer(hdab_app, host="127.0.0.1"))
        await hdab_client.start_server()
        node_ring = KeyRing()
        node_ring.add(service_key, org="hdab-b", roles=["hdab_staff"])
        node_env = {
            **common,
            "EHDS_NODE_SITE": "site-0",
            "EHDS_NODE_FHIR_PATH": str(root / "fhir"),
            "EHDS_AUDIT_DATABASE": str(root / "node-audit.sqlite"),
            "EHDS_NODE_PERMITS_TRUST_LIST": str(root / "trust.json"),
            "EHDS_NODE_PERMITS_ISSUERS": "hdab-b=" + str(hdab_client.make_url("")).rstrip("/"),
            "EHDS_NODE_PERMITS_POLL_SECONDS": "3600" if push else "1",
        }
        node_app = create_node_app(load_config(service="node", env=node_env), keys=node_ring)
        node_client = TestClient(TestServer(node_app, host="127.0.0.1", port=node_port))
        await node_client.start_server()
        sync = node_app[SYNC_KEY]
        assert isinstance(sync, StatusSync)
        service = hdab_app[HDAB_KEY]
        org, person = generate_key(), generate_key("ES256")
        jtis = []
        for _ in range(n):
            record = service.apply(_application(org, person, False))
            service.approve(record.id)
            jtis.append(service.issue(record.id).jti)
        latencies: list[float] = []
        base = str(hdab_client.make_url("")).rstrip("/")
        try:
            async with ServiceClient(base, key=staff) as client:
                for jti in jtis:
                    started = time.perf_counter()
                    await client.post(f"/permits/{jti}/revoke", {"reason": "bench"})
                    while True:
                        held = sync.store.get("hdab-b")
                        entry = held.entries.get(jti) if held is not None else None
                        if entry is not None and entry.status == "revoked":
                            break
                        await asyncio.sleep(0.002)
                    latencies.append(time.perf_counter() - started)
        finally:
            await node_client.close()
            await hdab_client.close()
        return latencies


def web_placeholder() -> Any:
    from aiohttp import web

    return web.Application()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def revocation(n: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for mode, push in (("push", True), ("poll", False)):
        lat = asyncio.run(_revocation_latency(push, n))
        out[mode] = {
            "n": len(lat),
            "p50_ms": round(_percentile(lat, 0.5) * 1000, 1),
            "p99_ms": round(_percentile(lat, 0.99) * 1000, 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small run (a few seconds)")
    args = parser.parse_args()
    n = 150 if args.quick else 2000
    result: dict[str, Any] = {"bench": "permit", "quick": args.quick, "n": n}
    for label, cross in (("single", False), ("cosigned", True)):
        rates = bench(cross, n)
        base = rates["raw_jwcrypto"]
        print(
            f"{label} HDAB permit ({'JWS JSON, 2 signatures' if cross else 'compact JWS'}), n={n}"
        )
        for name, rate in rates.items():
            print(f"  {name:<14} {rate:>10.0f} /s   x{rate / base:5.2f} vs raw jwcrypto")
        result[label] = {k: round(v, 1) for k, v in rates.items()}
        result[label]["ratios"] = {k: round(v / base, 3) for k, v in rates.items()}
    latency = revocation(20 if args.quick else 50)
    for mode, row in latency.items():
        print(
            f"revocation ({mode}) revoke over HTTP -> list at the gateway, n={row['n']:.0f}: "
            f"p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms"
        )
    result["revocation"] = latency
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
