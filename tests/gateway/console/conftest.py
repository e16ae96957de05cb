"""The HDAB service with its staff console on loopback, staff accounts, and a form-posting client.

Real components throughout: the HDAB app as ``ehds hdab serve`` builds it (SQLite
files for the permits and the audit log), argon2id password hashes, aiohttp's
client with a cookie jar, signed API requests for what applicants do.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from jwcrypto import jwk

from gateway.console.state import CONSOLE_KEY, ConsoleState
from tests.gateway.conftest import Api, Keys, application_body, make_config, start
from trust import generate_jwk as generate_key

PASSWORD = "correct horse battery staple"
STAFF = {"rita": "reviewer", "sam": "signer", "sue": "signer", "ada": "admin"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def password_hash() -> str:
    from gateway.console.passwords import hash_password

    return hash_password(PASSWORD)


@pytest.fixture(scope="session")
def peer_key() -> jwk.JWK:
    """The co-issuing HDAB's (hdab-se) permit key."""
    return generate_key()


@dataclass
class Env:
    client: TestClient
    api: Api
    keys: Keys
    state: ConsoleState
    peer: jwk.JWK
    tmp: Path

    @property
    def base(self) -> str:
        return str(self.client.make_url("/console/"))

    async def apply(self, **overrides: Any) -> str:
        resp = await self.api.call(
            "POST",
            "/applications",
            key=self.keys.user,
            json=application_body(self.keys.user, self.keys.person, **overrides),
        )
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])

    async def apply_cross_border(self) -> str:
        return await self.apply(cross_border={"lead": "hdab-test", "co_issuers": ["hdab-se"]})

    async def events(self, type_: str) -> list[dict[str, Any]]:
        size = await self.state.audit.view.tree_size()
        entries = await self.state.audit.view.entries(0, size)
        return [e["payload"] for e in entries if e["payload"]["type"] == type_]


class Staff:
    """One staff member's browser-less session: a client with its own cookie jar."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def csrf(self, path: str = "/console/") -> str:
        resp = await self.client.get(path)
        match = CSRF.search(await resp.text())
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    async def login(self, staff_id: str, password: str = PASSWORD) -> ClientResponse:
        token = await self.csrf("/console/login")
        return await self.client.post(
            "/console/login",
            data={"csrf": token, "staff_id": staff_id, "password": password},
            allow_redirects=False,
        )

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> ClientResponse:
        form = dict(data or {})
        if csrf:
            form["csrf"] = await self.csrf()
        return await self.client.post(path, data=form, allow_redirects=False)


@pytest.fixture
async def env(
    tmp_path: Path, keys: Keys, password_hash: str, peer_key: jwk.JWK
) -> AsyncIterator[Env]:
    from gateway.hdab_service import create_hdab_app
    from permits.trust_list import TrustList, trusted_key

    peers = tmp_path / "peers.json"
    peers.write_bytes(orjson.dumps(TrustList([trusted_key(peer_key, "hdab-se", "SE")]).to_dict()))
    config = make_config(
        tmp_path,
        "hdab",
        EHDS_HDAB_DATABASE=f"sqlite:///{tmp_path}/hdab.sqlite",
        EHDS_AUDIT_DATABASE=str(tmp_path / "hdab-audit.sqlite"),
        EHDS_SERVER_MAX_BODY_BYTES="262144",
        EHDS_HDAB_CONSOLE_PEER_KEYS=str(peers),
    )
    app = create_hdab_app(config, keys=keys.ring())
    state = app[CONSOLE_KEY]
    for staff_id, role in STAFF.items():
        state.store.add_staff(staff_id, role, password_hash, now=state.now())
    client = await start(app)
    try:
        yield Env(client, Api(client, "hdab-test"), keys, state, peer_key, tmp_path)
    finally:
        await client.close()


@pytest.fixture
async def staff_session(env: Env) -> AsyncIterator[Any]:
    """A factory of signed-in staff sessions, each with its own cookie jar."""
    clients: list[TestClient] = []

    async def make(staff_id: str | None = None) -> Staff:
        from aiohttp import CookieJar
        from aiohttp.test_utils import TestClient as Client

        client = Client(env.client.server, cookie_jar=CookieJar(unsafe=True))
        await client.start_server()
        clients.append(client)
        session = Staff(client)
        if staff_id is not None:
            resp = await session.login(staff_id)
            assert resp.status == 303, await resp.text()
        return session

    yield make
    for c in clients:
        await c.session.close()
