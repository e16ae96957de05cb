"""SMART Backend Services against the test server's token endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jwcrypto import jwk, jws

from fhir_adapters.errors import FhirSourceError, FhirUnauthorizedError, SmartAuthError
from fhir_adapters.sources import (
    BulkExporter,
    ExportRequest,
    FhirClient,
    RetryPolicy,
    SmartBackendAuth,
    search,
)
from fhir_adapters.sources.smart_auth import load_private_jwk
from fhir_adapters.testing.fhir_test_server import (
    ExportBehaviour,
    FhirTestServer,
    ServerConfig,
    SmartSettings,
    sample_resources,
)

FAST = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_cap=0.01)
CLIENT = "hospital-a-gateway"


@pytest.fixture(scope="module")
def ec_key() -> jwk.JWK:
    key = jwk.JWK.generate(kty="EC", crv="P-384")
    key.update(kid=key.thumbprint())  # type: ignore[no-untyped-call]
    return key


def _jwks(*keys: jwk.JWK) -> dict[str, Any]:
    return {"keys": [orjson.loads(k.export_public()) for k in keys]}


def _smart_server(key: jwk.JWK, **export: Any) -> FhirTestServer:
    return FhirTestServer(
        ServerConfig(
            resources=sample_resources(6, 2),
            smart=SmartSettings(clients={CLIENT: _jwks(key)}),
            export=ExportBehaviour(**export),
        )
    )


@pytest.fixture
async def server(ec_key: jwk.JWK) -> AsyncIterator[FhirTestServer]:
    async with _smart_server(ec_key) as srv:
        yield srv


async def test_discovery_token_and_bearer_on_downloads(
    server: FhirTestServer, ec_key: jwk.JWK, tmp_path: Path
) -> None:
    auth = SmartBackendAuth(client_id=CLIENT, key=ec_key, discovery_base=server.base_url)
    async with FhirClient(server.base_url, auth=auth, retry=FAST) as client:
        result = await BulkExporter(client).run(ExportRequest(), tmp_path)
    assert result.resources == 6 + 12 + 1
    assert server.counts["token_issued"] == 1
    assert server.counts["unauthorized"] == 0
    assert server.counts["download"] == server.counts["download_with_token"] > 0
    assert auth.alg == "ES384"


async def test_no_bearer_on_downloads_unless_required(ec_key: jwk.JWK, tmp_path: Path) -> None:
    async with _smart_server(ec_key, requires_access_token=False) as srv:
        auth = SmartBackendAuth(client_id=CLIENT, key=ec_key, token_url=srv.token_url)
        async with FhirClient(srv.base_url, auth=auth, retry=FAST) as client:
            await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path)
    assert srv.counts["download"] == 1
    assert srv.counts["download_with_token"] == 0


async def test_token_never_sent_to_a_foreign_origin(ec_key: jwk.JWK, tmp_path: Path) -> None:
    async with _smart_server(ec_key) as srv:
        auth = SmartBackendAuth(client_id=CLIENT, key=ec_key, token_url=srv.token_url)
        async with FhirClient(srv.base_url, auth=auth, retry=FAST) as client:
            # The manifest now names files on another origin (localhost vs 127.0.0.1).
            srv.base_url = srv.base_url.replace("127.0.0.1", "localhost")
            with pytest.raises(FhirSourceError) as info:
                await BulkExporter(client).run(ExportRequest(types=("Patient",)), tmp_path)
    assert info.value.code == "FHIR_UNTRUSTED_ORIGIN"
    assert srv.counts["download"] == 0


async def test_expired_token_renewed_once_on_401(server: FhirTestServer, ec_key: jwk.JWK) -> None:
    auth = SmartBackendAuth(client_id=CLIENT, key=ec_key, token_url=server.token_url)
    async with FhirClient(server.base_url, auth=auth, retry=FAST) as client:
        first = [r async for r in search(client, "Patient")]
        server.expire_tokens()  # the server forgets/expires it before our clock says so
        second = [r async for r in search(client, "Patient")]
    assert len(first) == len(second) == 6
    assert server.counts["unauthorized"] == 1
    assert server.counts["token_issued"] == 2
    assert client.stats.renewals_on_401 == 1


async def test_token_renewed_before_expiry(server: FhirTestServer, ec_key: jwk.JWK) -> None:
    now = [2_000_000_000.0]
    auth = SmartBackendAuth(
        client_id=CLIENT, key=ec_key, token_url=server.token_url, clock=lambda: now[0]
    )
    async with FhirClient(server.base_url, auth=auth, retry=FAST) as client:
        await client.get_json("Patient/p0001")
        now[0] += 100  # well inside the 300 s lifetime: reuse
        await client.get_json("Patient/p0001")
        assert server.counts["token_issued"] == 1
        now[0] += 150  # 250 s: inside the renewal margin (60 s before expiry)
        await client.get_json("Patient/p0001")
    assert server.counts["token_issued"] == 2
    assert server.counts["unauthorized"] == 0


async def test_persistent_401_is_an_error(server: FhirTestServer, ec_key: jwk.JWK) -> None:
    class Forgetful(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:  # tokens are never stored
            return None

    server.tokens = Forgetful()
    auth = SmartBackendAuth(client_id=CLIENT, key=ec_key, token_url=server.token_url)
    async with FhirClient(server.base_url, auth=auth, retry=FAST) as client:
        with pytest.raises(FhirUnauthorizedError) as info:
            await client.get_json("Patient/p0001")
    assert info.value.status == 401
    assert "access token missing, unknown or expired" in str(info.value)
    assert server.counts["token_issued"] == 2  # renewed exactly once


async def test_wrong_client_key_refused(server: FhirTestServer, ec_key: jwk.JWK) -> None:
    impostor = jwk.JWK.generate(kty="EC", crv="P-384")
    # Same kid as the registered key: only the signature can tell them apart.
    auth = SmartBackendAuth(
        client_id=CLIENT, key=impostor, kid=ec_key.get("kid"), token_url=server.token_url
    )
    async with FhirClient(server.base_url, auth=auth, retry=FAST) as client:
        with pytest.raises(SmartAuthError) as info:
            await client.get_json("Patient/p0001")
    assert info.value.code == "SMART_AUTH_REFUSED"
    assert "invalid_client" in str(info.value)
    assert server.counts["token_refused"] == 1
    assert server.counts["token_issued"] == 0


async def test_unknown_client_refused(server: FhirTestServer, ec_key: jwk.JWK) -> None:
    auth = SmartBackendAuth(client_id="someone-else", key=ec_key, token_url=server.token_url)
    async with FhirClient(server.base_url, auth=auth, retry=FAST) as client:
        with pytest.raises(SmartAuthError, match="invalid_client"):
            [r async for r in search(client, "Patient")]


async def test_rs384_client(tmp_path: Path) -> None:
    key = jwk.JWK.generate(kty="RSA", size=2048)
    key.update(kid="rsa-1")  # type: ignore[no-untyped-call]
    key_file = tmp_path / "client.jwk"
    key_file.write_text(key.export_private())
    loaded = load_private_jwk(key_file)
    async with _smart_server(key) as srv:
        auth = SmartBackendAuth(client_id=CLIENT, key=loaded, discovery_base=srv.base_url)
        async with FhirClient(srv.base_url, auth=auth, retry=FAST) as client:
            found = [r async for r in search(client, "Observation")]
    assert auth.alg == "RS384" and len(found) == 12


def test_client_assertion_claims(ec_key: jwk.JWK) -> None:
    auth = SmartBackendAuth(
        client_id=CLIENT,
        key=ec_key,
        token_url="https://auth.example/token",
        wall_clock=lambda: 1000.0,
    )
    a, b = (
        auth.client_assertion("https://auth.example/token"),
        auth.client_assertion("https://auth.example/token"),
    )
    token = jws.JWS()
    token.deserialize(a)
    token.verify(ec_key, alg="ES384")
    header = token.jose_header
    claims = orjson.loads(token.payload)
    assert header == {"alg": "ES384", "kid": ec_key.get("kid"), "typ": "JWT"}
    assert claims["iss"] == claims["sub"] == CLIENT
    assert claims["aud"] == "https://auth.example/token"
    assert claims["exp"] - 1000 <= 300
    other = jws.JWS()
    other.deserialize(b)
    assert orjson.loads(other.objects["payload"])["jti"] != claims["jti"]
    assert ec_key.get("d") not in repr(auth)


def test_key_and_url_checks(ec_key: jwk.JWK, tmp_path: Path) -> None:
    with pytest.raises(SmartAuthError) as info:
        SmartBackendAuth(
            client_id=CLIENT, key=jwk.JWK.generate(kty="EC", crv="P-256"), token_url="https://a/t"
        )
    assert info.value.code == "SMART_AUTH_KEY"
    public = jwk.JWK.from_json(ec_key.export_public())
    with pytest.raises(SmartAuthError, match="no private part"):
        SmartBackendAuth(client_id=CLIENT, key=public, token_url="https://a/t")
    with pytest.raises(SmartAuthError) as info:
        SmartBackendAuth(client_id=CLIENT, key=ec_key, token_url="http://auth.example/token")
    assert info.value.code == "SMART_AUTH_INSECURE"
    bad = tmp_path / "bad.jwk"
    bad.write_text("not json")
    with pytest.raises(SmartAuthError, match="cannot read"):
        load_private_jwk(bad)


def test_bearer_never_over_plain_http_to_a_remote_server(ec_key: jwk.JWK) -> None:
    auth = SmartBackendAuth(client_id=CLIENT, key=ec_key, token_url="https://auth.example/token")
    with pytest.raises(FhirSourceError) as info:
        FhirClient("http://fhir.hospital.example/r4", auth=auth)
    assert info.value.code == "FHIR_INSECURE"
    FhirClient("https://fhir.hospital.example/r4", auth=auth)  # fine


async def test_rebase_links_for_a_server_behind_a_proxy(ec_key: jwk.JWK, tmp_path: Path) -> None:
    """The server advertises another origin (its 'internal' address); opt-in rebasing fixes it."""
    async with _smart_server(ec_key) as srv:
        srv.base_url = srv.base_url.replace("127.0.0.1", "localhost")  # next/status/file URLs
        auth = SmartBackendAuth(client_id=CLIENT, key=ec_key, token_url=srv.token_url)
        async with FhirClient(srv.origin + "/fhir", auth=auth, retry=FAST) as strict:
            with pytest.raises(FhirSourceError, match="another origin"):
                [r async for r in search(strict, "Observation", count=5)]
        async with FhirClient(
            srv.origin + "/fhir", auth=auth, retry=FAST, rebase_links=True
        ) as client:
            found = [r async for r in search(client, "Observation", count=5)]
            result = await BulkExporter(client).run(ExportRequest(), tmp_path)
    assert len(found) == 12
    assert result.resources == 19
    assert srv.counts["download"] == srv.counts["download_with_token"] > 0
