"""SMART Backend Services (SMART App Launch 2.2.0): tokens for system-to-system FHIR access.

Discovery reads ``[base]/.well-known/smart-configuration``; the token request
is ``client_credentials`` authenticated by a ``private_key_jwt`` client
assertion (RS384 or ES384, ``kid``, ``jti``, ``exp`` at most five minutes
ahead) signed with jwcrypto. The access token is cached, renewed shortly
before it expires, and renewed once more when a server answers 401.

The token and the private key never appear in messages, reprs or logs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson
from jwcrypto import jwk, jwt

from fhir_adapters.errors import SmartAuthError
from fhir_adapters.sources.http import RetryPolicy, is_loopback, parse_retry_after, redact_url

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: SMART requires servers to support these two; we pin one per key type.
SUPPORTED_ALGS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300


def require_secure_url(url: str, *, what: str, allow_insecure: bool = False) -> None:
    """Tokens and assertions travel only over https (plain http only to loopback)."""
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and (is_loopback(url) or allow_insecure)):
        return
    raise SmartAuthError(
        f"{what} must be an https URL (got {scheme or 'no'} scheme for {redact_url(url)})",
        code="SMART_AUTH_INSECURE",
    )


def algorithm_for_key(key: jwk.JWK) -> str:
    """RS384 for RSA (>= 2048 bits), ES384 for EC P-384; anything else is refused."""
    if not key.has_private:
        raise SmartAuthError("the client key has no private part", code="SMART_AUTH_KEY")
    kty = key.get("kty")
    if kty == "RSA":
        size = len(jwk.base64url_decode(key.get("n"))) * 8
        if size < 2048:
            raise SmartAuthError(f"RSA client key too small ({size} bits)", code="SMART_AUTH_KEY")
        return "RS384"
    if kty == "EC" and key.get("crv") == "P-384":
        return "ES384"
    raise SmartAuthError(
        f"client key must be RSA (RS384) or EC P-384 (ES384), got {kty}/{key.get('crv')}",
        code="SMART_AUTH_KEY",
    )


def load_private_jwk(path: str | Path) -> jwk.JWK:
    """A private JWK from a file (a bare JWK, or a JWKS holding exactly one private key)."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise SmartAuthError(
            f"cannot read client key file {Path(path).name}", code="SMART_AUTH_KEY"
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        private = [k for k in data["keys"] if isinstance(k, dict) and "d" in k]
        if len(private) != 1:
            raise SmartAuthError(
                "the key file holds a JWKS without exactly one private key", code="SMART_AUTH_KEY"
            )
        data = private[0]
    try:
        return jwk.JWK(**data)
    except Exception as exc:  # jwcrypto raises several types for bad keys
        raise SmartAuthError(
            "the client key file is not a valid JWK", code="SMART_AUTH_KEY"
        ) from exc


@dataclass(frozen=True)
class SmartConfiguration:
    token_endpoint: str
    auth_methods: tuple[str, ...]
    signing_algs: tuple[str, ...]
    scopes: tuple[str, ...]
    capabilities: tuple[str, ...]


def _strings(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def parse_smart_configuration(body: object, *, base_url: str) -> SmartConfiguration:
    if not isinstance(body, Mapping) or not isinstance(body.get("token_endpoint"), str):
        raise SmartAuthError(
            "smart-configuration has no token_endpoint", code="SMART_AUTH_DISCOVERY"
        )
    return SmartConfiguration(
        token_endpoint=urljoin(base_url.rstrip("/") + "/", body["token_endpoint"]),
        auth_methods=_strings(body.get("token_endpoint_auth_methods_supported")),
        signing_algs=_strings(body.get("token_endpoint_auth_signing_alg_values_supported")),
        scopes=_strings(body.get("scopes_supported")),
        capabilities=_strings(body.get("capabilities")),
    )


async def discover_smart_configuration(
    session: aiohttp.ClientSession, base_url: str
) -> SmartConfiguration:
    """``GET [base]/.well-known/smart-configuration``."""
    url = base_url.rstrip("/") + "/.well-known/smart-configuration"
    try:
        async with session.get(url, headers={"Accept": "application/json"}) as resp:
            if resp.status != 200:
                raise SmartAuthError(
                    f"SMART discovery: HTTP {resp.status} from {redact_url(url)}",
                    code="SMART_AUTH_DISCOVERY",
                )
            body = orjson.loads(await resp.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        raise SmartAuthError(
            f"SMART discovery failed at {redact_url(url)} ({type(exc).__name__})",
            code="SMART_AUTH_DISCOVERY",
        ) from exc
    return parse_smart_configuration(body, base_url=base_url)


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float
    lifetime: float
    scope: str | None

    def __repr__(self) -> str:  # never print the token
        return f"AccessToken(expires_at={self.expires_at:.0f}, scope={self.scope!r})"


class SmartBackendAuth:
    """An :class:`~fhir_adapters.sources.http.AuthProvider` for SMART Backend Services.

    Give ``token_url`` directly, or ``discovery_base`` (the FHIR base URL) to
    find it through ``.well-known/smart-configuration`` on first use.
    """

    def __init__(
        self,
        *,
        client_id: str,
        key: jwk.JWK,
        token_url: str | None = None,
        discovery_base: str | None = None,
        scope: str = "system/*.rs",
        kid: str | None = None,
        renew_margin: float = 60.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        wall_clock: Callable[[], float] = time.time,
        allow_insecure: bool = False,
    ) -> None:
        if not client_id:
            raise SmartAuthError("client_id is required", code="SMART_AUTH_CONFIG")
        if token_url is None and discovery_base is None:
            raise SmartAuthError(
                "give a token URL or a FHIR base URL for discovery", code="SMART_AUTH_CONFIG"
            )
        self.client_id = client_id
        self.alg = algorithm_for_key(key)
        self.kid = kid or key.get("kid") or key.thumbprint()
        self.scope = scope
        self.renew_margin = renew_margin
        self.retry = retry or RetryPolicy(max_attempts=4)
        self.clock = clock  # token freshness
        self.wall_clock = wall_clock  # iat/exp of client assertions
        self.allow_insecure = allow_insecure
        self.token_requests = 0
        self._key = key
        self._token_url = token_url
        self._discovery_base = discovery_base
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()
        if token_url is not None:
            require_secure_url(token_url, what="token URL", allow_insecure=allow_insecure)

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.client_id!r}, alg={self.alg}, kid={self.kid!r})"

    # ----------------------------------------------------------- assertion
    def client_assertion(self, token_url: str) -> str:
        """A fresh signed JWT: iss = sub = client_id, aud = token URL, exp in 5 minutes, new jti."""
        now = int(self.wall_clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + MAX_ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.JWT(header={"alg": self.alg, "kid": self.kid, "typ": "JWT"}, claims=claims)
        token.make_signed_token(self._key)
        return str(token.serialize())

    # --------------------------------------------------------------- tokens
    async def token_url(self, session: aiohttp.ClientSession) -> str:
        if self._token_url is None:
            assert self._discovery_base is not None
            config = await discover_smart_configuration(session, self._discovery_base)
            if config.auth_methods and "private_key_jwt" not in config.auth_methods:
                raise SmartAuthError(
                    "server does not accept private_key_jwt client authentication",
                    code="SMART_AUTH_DISCOVERY",
                )
            if config.signing_algs and self.alg not in config.signing_algs:
                raise SmartAuthError(
                    f"server does not accept {self.alg} client assertions "
                    f"(accepts {', '.join(config.signing_algs)})",
                    code="SMART_AUTH_DISCOVERY",
                )
            require_secure_url(
                config.token_endpoint, what="token endpoint", allow_insecure=self.allow_insecure
            )
            self._token_url = config.token_endpoint
        return self._token_url

    def _fresh(self) -> bool:
        token = self._token
        if token is None:
            return False
        margin = min(self.renew_margin, token.lifetime * 0.2)
        return self.clock() < token.expires_at - margin

    async def access_token(
        self, session: aiohttp.ClientSession, *, force_renew: bool = False
    ) -> AccessToken:
        async with self._lock:
            if force_renew or not self._fresh():
                self._token = await self._request_token(session)
            assert self._token is not None
            return self._token

    async def authorization(
        self, session: aiohttp.ClientSession, *, force_renew: bool = False
    ) -> str:
        return f"Bearer {(await self.access_token(session, force_renew=force_renew)).value}"

    async def _request_token(self, session: aiohttp.ClientSession) -> AccessToken:
        url = await self.token_url(session)
        attempt = 0
        while True:
            form = {
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.client_assertion(url),
            }
            self.token_requests += 1
            started = self.clock()
            try:
                async with session.post(
                    url, data=form, headers={"Accept": "application/json"}
                ) as resp:
                    status = resp.status
                    raw = await resp.content.read(64 * 1024)
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                attempt += 1
                if attempt >= self.retry.max_attempts:
                    raise SmartAuthError(
                        f"token endpoint unreachable ({type(exc).__name__})",
                        code="SMART_AUTH_UNREACHABLE",
                    ) from exc
                await asyncio.sleep(self.retry.delay(attempt - 1, None))
                continue
            body: Any
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            if status == 200:
                return self._parse_token(body, started)
            attempt += 1
            if status in self.retry.retry_statuses and attempt < self.retry.max_attempts:
                await asyncio.sleep(self.retry.delay(attempt - 1, retry_after))
                continue
            error = body.get("error") if isinstance(body, Mapping) else None
            description = body.get("error_description") if isinstance(body, Mapping) else None
            detail = f": {error}" if isinstance(error, str) else ""
            if isinstance(description, str) and description:
                detail += f" ({' '.join(description.split())[:200]})"
            code = "SMART_AUTH_REFUSED" if status in (400, 401, 403) else "SMART_AUTH"
            raise SmartAuthError(
                f"token endpoint refused client {self.client_id!r}: HTTP {status}{detail}",
                code=code,
            )

    def _parse_token(self, body: object, started: float) -> AccessToken:
        if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str):
            raise SmartAuthError("token response has no access_token", code="SMART_AUTH_PROTOCOL")
        token_type = body.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise SmartAuthError(
                f"token type {token_type!r} is not bearer", code="SMART_AUTH_PROTOCOL"
            )
        expires_in = body.get("expires_in", 300)
        if not isinstance(expires_in, int | float) or expires_in <= 0:
            raise SmartAuthError("token response has a bad expires_in", code="SMART_AUTH_PROTOCOL")
        scope = body.get("scope") if isinstance(body.get("scope"), str) else None
        return AccessToken(
            value=body["access_token"],
            expires_at=started + float(expires_in),
            lifetime=float(expires_in),
            scope=scope,
        )
