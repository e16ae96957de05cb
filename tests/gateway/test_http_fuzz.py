"""Fuzz every route of both services: path, query, headers and body; never a 5xx.

Each generated request goes to a real aiohttp server on loopback, half of them
signed with a key that holds the route's role (so handlers are reached, not
only the auth check). Inputs include Unicode digits, percent-encoded bad
UTF-8, deep JSON nesting, long headers and arbitrary bytes. Every answer must
be below 500, and every 4xx must be problem+json with a code.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk
from yarl import URL

from gateway.http.auth import sign_request
from gateway.http.routing import SPECS_KEY, RouteSpec
from permits import TrustList, generate_key, trusted_key
from tests.gateway.conftest import Keys, make_config, node_config

NASTY_TEXT = [
    "%C2%B2",  # superscript two: str.isdigit() but not int()
    "%D9%A3",  # Arabic-Indic three: int() accepts it
    "%FF%FE",  # not UTF-8
    "%00",
    "-1",
    "99999999999999999999999",
    "1e3",
    "%E2%80%AE",
    "..%2F..%2Fetc",
    "a" * 300,
]
PARAM = re.compile(r"\{([a-z_]+)(?::[^}]*)?\}")


@dataclass
class Target:
    base: str
    audience: str
    specs: list[RouteSpec]
    keys: dict[str, jwk.JWK]


def _deep(depth: int) -> bytes:
    return b'{"spec": ' + b"[" * depth + b"]" * depth + b"}"


segment = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(alphabet="abcXYZ019-_.:@", min_size=1, max_size=40),
)
query_value = st.one_of(st.sampled_from(NASTY_TEXT), st.integers(-5, 10**6).map(str))
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    st.sampled_from(
        [b"\xff\xfe{", b"{", b"[]", b'{"spec": "x"}', b'{"token": 1}', b"null", _deep(900)]
    ),
    st.dictionaries(
        st.sampled_from(["spec", "token", "reason", "changes", "decision", "permit", "params"]),
        st.one_of(st.text(max_size=20), st.integers(-(2**60), 2**60), st.just({}), st.just([1])),
        max_size=4,
    ).map(orjson.dumps),
)
headers = st.dictionaries(
    st.sampled_from(["X-Fuzz", "If-None-Match", "Accept", "Authorization", "Content-Type"]),
    st.one_of(
        st.text(alphabet="abc ,;=/*\"'", max_size=30),
        st.integers(8000, 12_000).map(lambda n: "a" * n),
        st.sampled_from(["EHDS-JWS x.y.z", "application/json", "text/plain"]),
    ),
    max_size=3,
)


async def _request(target: Target, data: Any) -> tuple[int, str, bytes]:
    spec: RouteSpec = data["spec"]
    path = PARAM.sub(lambda _m: data["segment"], spec.path)
    if data["query"]:
        path += "?" + "&".join(f"{k}={v}" for k, v in data["query"].items())
    body: bytes = data["body"] if spec.method not in ("GET", "HEAD") else b""
    hdrs = dict(data["headers"])
    if body and "Content-Type" not in hdrs:
        hdrs["Content-Type"] = "application/json"
    if data["sign"] and not spec.public:
        key = target.keys[sorted(spec.roles)[0]]
        hdrs["Authorization"] = sign_request(
            key, method=spec.method, path=path, body=body, audience=target.audience
        )
    async with (
        ClientSession() as session,
        session.request(
            spec.method,
            URL(target.base + path, encoded=True),
            data=body or None,
            headers=hdrs,
            skip_auto_headers=["Content-Type"] if not body else (),
        ) as resp,
    ):
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


def _fuzz(loop: asyncio.AbstractEventLoop, target: Target, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(draw=st.data())
    def run(draw: st.DataObject) -> None:
        spec: RouteSpec = draw.draw(st.sampled_from(target.specs))
        declared = [p.name for p in spec.params if p.where == "query"]
        data = {
            "spec": spec,
            "segment": draw.draw(segment),
            # the route's own query parameters, with hostile values, plus strangers
            "query": draw.draw(
                st.dictionaries(st.sampled_from([*declared, "x", "index"]), query_value, max_size=3)
            ),
            "body": draw.draw(bodies),
            "headers": draw.draw(headers),
            "sign": draw.draw(st.booleans()),
        }
        status, ctype, raw = loop.run_until_complete(_request(target, data))
        where = f"{data['spec'].method} {data['spec'].path} -> {status} {raw[:200]!r}"
        assert status < 500, where
        if status >= 400 and data["spec"].method != "HEAD":
            assert ctype.startswith("application/problem+json"), where
            assert orjson.loads(raw)["code"], where

    run()
    # and a deterministic sweep: every hostile value in every path and query parameter
    for spec in target.specs:
        names = [p.name for p in spec.params if p.where == "query"]
        has_path = PARAM.search(spec.path) is not None
        if not names and not has_path:
            continue
        for value in NASTY_TEXT:
            data = {
                "spec": spec,
                "segment": value,
                "query": {n: value for n in names},
                "body": b"",
                "headers": {},
                "sign": True,
            }
            status, _ctype, raw = loop.run_until_complete(_request(target, data))
            assert status < 500, f"{spec.method} {spec.path} {value} -> {status} {raw[:200]!r}"


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def _serve(loop: asyncio.AbstractEventLoop, app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    loop.run_until_complete(server.start_server())
    return server


def _role_keys(keys: Keys) -> dict[str, jwk.JWK]:
    return {
        "hdab_staff": keys.staff,
        "data_user": keys.user,
        "operator": keys.operator,
        "auditor": keys.auditor,
    }


def test_hdab_routes_never_answer_5xx(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, keys: Keys
) -> None:
    from gateway.hdab_service import create_hdab_app

    config = make_config(
        tmp_path,
        "hdab",
        EHDS_HDAB_DATABASE=f"sqlite:///{tmp_path}/hdab.sqlite",
        EHDS_AUDIT_DATABASE=str(tmp_path / "hdab-audit.sqlite"),
    )
    app = create_hdab_app(config, keys=keys.ring())
    server = _serve(loop, app)
    try:
        specs = list(app[SPECS_KEY].values())
        target = Target(str(server.make_url("")).rstrip("/"), "hdab-test", specs, _role_keys(keys))
        _fuzz(loop, target, 120)
    finally:
        loop.run_until_complete(server.close())


def test_node_routes_never_answer_5xx(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, keys: Keys, tiny_site: Path
) -> None:
    from gateway.node_service import create_node_app

    trust = tmp_path / "trust.json"
    trust.write_bytes(
        orjson.dumps(TrustList([trusted_key(generate_key(), "hdab-x", "FI")]).to_dict())
    )
    config = node_config(tmp_path, tiny_site, EHDS_NODE_PERMITS_TRUST_LIST=str(trust))
    app = create_node_app(config, keys=keys.ring())
    server = _serve(loop, app)
    try:
        specs = list(app[SPECS_KEY].values())
        target = Target(str(server.make_url("")).rstrip("/"), "site-a", specs, _role_keys(keys))
        _fuzz(loop, target, 120)
    finally:
        loop.run_until_complete(server.close())
