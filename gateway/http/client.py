"""A small async client for both services: signs requests, turns problems into errors.

    async with ServiceClient("http://127.0.0.1:8700", key=my_private_jwk) as hdab:
        record = await hdab.post("/applications", application)
        register = await hdab.get("/register")

The audience to sign for is read once from ``GET /health`` unless given. A
problem+json answer raises :class:`ServiceError` carrying the server's ``code``
and status, so the CLI prints ``ehds: error: [CODE] ...`` like any local error.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aiohttp
import orjson
from jwcrypto import jwk

from gateway.errors import GatewayError
from gateway.http.auth import sign_request


class ServiceError(GatewayError):
    """The service refused: ``code`` and ``status`` are the server's."""


class ServiceClient:
    def __init__(
        self,
        base_url: str,
        *,
        key: jwk.JWK | None = None,
        audience: str | None = None,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.audience = audience
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _audience(self) -> str:
        if self.audience is None:
            health = await self.request("GET", "/health", sign=False)
            self.audience = str(health["org"])
        return self.audience

    async def request(
        self, method: str, path: str, body: Any = None, *, sign: bool | None = None
    ) -> Any:
        """Send one request; signed when a key is set (or ``sign`` says so)."""
        data = orjson.dumps(body) if body is not None else b""
        headers = {"Accept": "application/json"}
        if data:
            headers["Content-Type"] = "application/json"
        if sign if sign is not None else self.key is not None:
            if self.key is None:
                raise GatewayError(
                    "this request must be signed but no key is set", code="AUTH_MISSING"
                )
            headers["Authorization"] = sign_request(
                self.key, method=method, path=path, body=data, audience=await self._audience()
            )
        async with self.session.request(
            method, self.base_url + path, data=data or None, headers=headers
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                try:
                    problem = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    problem = {}
                code = problem.get("code") if isinstance(problem, dict) else None
                detail = (
                    problem.get("detail") or problem.get("title")
                    if isinstance(problem, dict)
                    else None
                )
                raise ServiceError(
                    str(detail or f"HTTP {resp.status}"),
                    code=code if isinstance(code, str) else f"HTTP_{resp.status}",
                    status=resp.status,
                )
            if not raw:
                return None
            if resp.content_type.endswith("json"):
                return orjson.loads(raw)
            return raw.decode()

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body)


__all__ = ["ServiceClient", "ServiceError"]
