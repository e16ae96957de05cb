"""``ehds keys generate --alg RS384|ES384`` and ``ehds keys jwks``: a SMART client from scratch.

The JWKS printed by ``ehds keys jwks`` is registered with the test server's
token endpoint as is, and the generated private key then authenticates an
export: what a hospital does with its real FHIR server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapters.testing.fhir_test_server import (
    FhirTestServer,
    ServerConfig,
    SmartSettings,
    sample_resources,
)
from gateway import cli


async def _ehds(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


@pytest.mark.parametrize(("alg", "kty"), [("RS384", "RSA"), ("ES384", "EC")])
async def test_generated_key_and_its_jwks_authenticate_an_export(
    tmp_path: Path, capsys: Any, alg: str, kty: str
) -> None:
    key_file = tmp_path / "client.jwk"
    assert await _ehds("keys", "generate", "--alg", alg, "--out", str(key_file)) == 0
    kid = capsys.readouterr().out.strip()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert await _ehds("keys", "jwks", str(key_file)) == 0
    jwks = orjson.loads(capsys.readouterr().out)
    [public] = jwks["keys"]
    assert public["kty"] == kty and public["alg"] == alg and public["kid"] == kid
    assert "d" not in public and "p" not in public  # nothing private in what gets registered

    smart = SmartSettings(clients={"gw": jwks})
    async with FhirTestServer(ServerConfig(resources=sample_resources(3, 1), smart=smart)) as srv:
        rc = await _ehds(
            "fhir", "export", "--base", srv.base_url, "--client-id", "gw", "--key", str(key_file),
            "--out", str(tmp_path / "out"), "--json", "--poll-floor", "0",
        )  # fmt: skip
        assert rc == 0, capsys.readouterr().err
        assert orjson.loads(capsys.readouterr().out.splitlines()[-1])["resources"] == 7
        assert srv.counts["token_issued"] == 1


async def test_jwks_refuses_a_key_smart_servers_do_not_accept(tmp_path: Path, capsys: Any) -> None:
    ed = tmp_path / "ed.jwk"
    assert await _ehds("keys", "generate", "--out", str(ed)) == 0
    capsys.readouterr()
    assert await _ehds("keys", "jwks", str(ed)) == 2
    assert "[TRUST_BAD_KEY]" in capsys.readouterr().err
    (tmp_path / "junk.jwk").write_text("{not json")
    assert await _ehds("keys", "jwks", str(tmp_path / "junk.jwk")) == 2
    assert "ehds: error: [" in capsys.readouterr().err


async def test_show_reports_the_smart_algorithm(tmp_path: Path, capsys: Any) -> None:
    key_file = tmp_path / "client.jwk"
    assert await _ehds("keys", "generate", "--alg", "ES384", "--out", str(key_file)) == 0
    capsys.readouterr()
    assert await _ehds("keys", "show", str(key_file), "--json") == 0
    info = orjson.loads(capsys.readouterr().out)
    assert info["alg"] == "ES384" and info["crv"] == "P-384" and info["private"] is True
