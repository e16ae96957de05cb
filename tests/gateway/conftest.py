"""Fixtures: real services on loopback ports, real keys, signed requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from jwcrypto import jwk

from gateway.client_keys import KeyRing
from gateway.config import GatewayConfig, load_config
from gateway.http.auth import sign_request
from trust import generate_jwk as generate_key
from trust import thumbprint


@dataclass
class Keys:
    staff: jwk.JWK
    user: jwk.JWK
    person: jwk.JWK
    operator: jwk.JWK
    auditor: jwk.JWK
    stranger: jwk.JWK

    def ring(self) -> KeyRing:
        ring = KeyRing()
        ring.add(self.staff, org="hdab-test", roles=["hdab_staff"])
        ring.add(self.user, org="org-research-1", roles=["data_user"])
        ring.add(self.operator, org="site-a", roles=["operator"])
        ring.add(self.auditor, org="site-a", roles=["auditor"])
        return ring


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(*(generate_key() for _ in range(6)))


def make_config(tmp_path: Path, service: str, **env: str) -> GatewayConfig:
    base = {
        "EHDS_DATA_DIR": str(tmp_path),
        "EHDS_AUDIT_DATABASE": ":memory:",
        "EHDS_HDAB_ID": "hdab-test",
        "EHDS_HDAB_COUNTRY": "FI",
        "EHDS_NODE_SITE": "site-a",
        "EHDS_SERVER_MAX_BODY_BYTES": "4096",
        "EHDS_SERVER_ACCESS_LOG": "false",
    }
    base.update(env)
    return load_config(service=service, env=base)  # type: ignore[arg-type]


class Api:
    """A client for one service that signs requests like a real one would."""

    def __init__(self, client: TestClient, audience: str, reader: jwk.JWK | None = None) -> None:
        self.client = client
        self.audience = audience
        self.reader = reader  # signs audit entry reads where they need a signature

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: jwk.JWK | None = None,
        json: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        sign_body: bytes | None = None,
        sign_path: str | None = None,
        audience: str | None = None,
    ) -> ClientResponse:
        body = raw if raw is not None else (orjson.dumps(json) if json is not None else b"")
        hdrs = dict(headers or {})
        if body and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = "application/json"
        if key is not None:
            hdrs["Authorization"] = sign_request(
                key,
                method=method,
                path=sign_path or path,
                body=body if sign_body is None else sign_body,
                audience=audience or self.audience,
            )
        return await self.client.request(method, path, data=body or None, headers=hdrs)


async def start(app: web.Application) -> TestClient:
    server = TestServer(app, host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    return client


def application_body(user: jwk.JWK, person: jwk.JWK, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "holder_of_permit": {
            "id": "org-research-1",
            "name": "Example Research Institute",
            "country": "FI",
            "sector": "private",
            "kid": thumbprint(user),
        },
        "authorised_persons": [{"id": "person-7f3a", "role": "analyst", "kid": thumbprint(person)}],
        "purpose": {
            "codes": ["e.ii"],
            "description": "Train and evaluate a readmission risk model.",
            "declared_uses": ["model_training"],
        },
        "data": [
            {
                "holder": "site-a",
                "datasets": ["ehr-2020-2024"],
                "feature_spec_hash": "sha256:" + "a" * 64,
                "time_range": {"start": "2020-01-01", "end": "2024-12-31"},
                "form": "pseudonymised",
            }
        ],
        "processing": {
            "operations": ["train", "evaluate"],
            "federated_xgboost": {
                "strategies": ["bagging"],
                "max_rounds": 5,
                "max_depth": 6,
                "min_rows_per_site": 50,
                "min_rows_per_leaf": 10,
                "outputs": ["model", "aggregate_metrics"],
            },
        },
        "opt_out": {"applied": True},
        "spe": {"id": "spe-federated-1", "mode": "federated"},
        "duration_days": 365,
    }
    body.update(overrides)
    return body


@pytest.fixture
async def hdab(tmp_path: Path, keys: Keys) -> AsyncIterator[Api]:
    from gateway.hdab_service import create_hdab_app

    config = make_config(
        tmp_path,
        "hdab",
        EHDS_HDAB_DATABASE=f"sqlite:///{tmp_path}/hdab.sqlite",
        EHDS_AUDIT_DATABASE=str(tmp_path / "hdab-audit.sqlite"),
    )
    client = await start(create_hdab_app(config, keys=keys.ring()))
    try:
        yield Api(client, "hdab-test")
    finally:
        await client.close()


@pytest.fixture(scope="session")
def site_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic hospital (120 patients) as Bulk-Data-style NDJSON."""
    from fhir_adapters.testing.synthetic import CohortConfig, write_ndjson

    (folder,) = write_ndjson(
        CohortConfig(n_patients=120, n_sites=1, seed=1), tmp_path_factory.mktemp("site")
    )
    return folder


@pytest.fixture(scope="session")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hospital with 3 patients: below any disclosure floor."""
    from fhir_adapters.testing.synthetic import CohortConfig, write_ndjson

    (folder,) = write_ndjson(
        CohortConfig(n_patients=3, n_sites=1, seed=2), tmp_path_factory.mktemp("tiny")
    )
    return folder


def node_config(tmp_path: Path, fhir: Path, **env: str) -> GatewayConfig:
    return make_config(
        tmp_path,
        "node",
        EHDS_NODE_FHIR_PATH=str(fhir),
        EHDS_AUDIT_DATABASE=str(tmp_path / "node-audit.sqlite"),
        EHDS_SERVER_MAX_BODY_BYTES="262144",
        **{"EHDS_NODE_DRY_RUN_ROLES": "operator,data_user", **env},
    )


@pytest.fixture
async def node(tmp_path: Path, keys: Keys, site_data: Path) -> AsyncIterator[Api]:
    from gateway.node_service import create_node_app

    client = await start(create_node_app(node_config(tmp_path, site_data), keys=keys.ring()))
    try:
        yield Api(client, "site-a", reader=keys.auditor)
    finally:
        await client.close()


async def audit_events(api: Api, start: int = 0) -> list[dict[str, Any]]:
    """Payloads of the service's audit entries from ``start`` on."""
    out: list[dict[str, Any]] = []
    while True:
        resp = await api.call("GET", f"/audit/entries?start={start}&limit=100", key=api.reader)
        assert resp.status == 200, await resp.text()
        entries = (await resp.json())["entries"]
        out.extend(e["payload"] for e in entries)
        if len(entries) < 100:
            return out
        start += len(entries)


def is_http_refusal(event: dict[str, Any]) -> bool:
    return event["type"] == "access.denied" and str(
        event["details"].get("operation", "")
    ).startswith("http.")


async def decisions_size(api: Api) -> int:
    """Audit entries that are not refused HTTP requests (those are audited since #12)."""
    return sum(1 for e in await audit_events(api) if not is_http_refusal(e))
