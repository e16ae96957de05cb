"""One FHIR server over HTTP: retries, backoff, ``Retry-After``, auth, errors.

Real servers are slow, flaky and picky. Every request made by search, export
and downloads goes through :meth:`FhirClient.open`, which

- retries 408/429/5xx, connection errors and ``transient`` OperationOutcomes
  with capped exponential backoff (full jitter: uniform in ``[0, d]``),
  honouring ``Retry-After`` (seconds, an HTTP date or an absolute epoch, see
  :mod:`~fhir_adapters.sources.retry_after`), capped, each wait reported to
  ``on_retry`` so a user sees it;
- never resends a request that is not safe to repeat (a kick-off) once it may
  have reached the server: only a refused connection is retried then;
- attaches the SMART bearer token only to trusted origins (the base URL's,
  plus any listed), renews it before expiry and once more on a 401;
- turns a final error into :class:`FhirHttpError` /
  :class:`FhirOperationOutcomeError` whose message is one line: status,
  method, path (never the query string, which may hold identifiers) and the
  server's OperationOutcome diagnostics.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
import orjson
import yarl

from fhir_adapters.errors import (
    FhirHttpError,
    FhirOperationOutcomeError,
    FhirProtocolError,
    FhirSourceError,
    FhirUnauthorizedError,
)
from fhir_adapters.sources.outcome import is_transient_outcome, summarize_outcome
from fhir_adapters.sources.retry_after import parse_retry_after

if TYPE_CHECKING:
    from fhir_adapters.sources.capability import ServerCapability

FHIR_JSON = "application/fhir+json"
FHIR_NDJSON = "application/fhir+ndjson"
USER_AGENT = "ehds-gateway-fhir-client/0.1"
_ERROR_BODY_LIMIT = 64 * 1024

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
RetryHook = Callable[[int | None, float], None]


class AuthProvider(Protocol):
    """Something that yields an ``Authorization`` header value (SMART, static token...)."""

    async def authorization(
        self, session: aiohttp.ClientSession, *, force_renew: bool = False
    ) -> str:
        """Return ``"Bearer <token>"``; ``force_renew`` after a 401."""
        ...


@dataclass(frozen=True)
class StaticToken:
    """A fixed bearer token (for servers configured out of band)."""

    token: str

    async def authorization(
        self, session: aiohttp.ClientSession, *, force_renew: bool = False
    ) -> str:
        return f"Bearer {self.token}"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_attempts`` counts the first try."""

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    #: Longest single wait; a server asking for more is waited on this long, then retried.
    max_retry_after: float = 600.0
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Capped exponential backoff with full jitter: uniform in ``[0, d]``, ``d = min(cap, base*2^n)``.

        Full jitter (not "equal" or "half") spreads clients that failed together
        over the whole window, so they do not come back in a herd.
        """
        ceiling = min(self.backoff_cap, self.backoff_base * (2.0 ** max(0, attempt)))
        return (rng or random).random() * ceiling

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait before the next try: the server's ``Retry-After`` (capped) when it gives one."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after)
        return self.backoff(attempt)


#: Connection failures where nothing reached the server (safe to resend anything).
_NOT_SENT: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,) + (
    (aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ()
)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def redact_url(url: str) -> str:
    """Path only: query strings of FHIR searches can hold identifiers or names."""
    parts = urlsplit(url)
    return parts.path or "/"


#: Largest JSON document read into memory (a search page, a manifest, a CapabilityStatement).
MAX_JSON_BYTES = 256 * 1024 * 1024


async def read_json(
    response: aiohttp.ClientResponse, *, what: str, limit: int = MAX_JSON_BYTES
) -> Any:
    """Parse a JSON body, refusing one larger than ``limit`` before it fills memory."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise FhirProtocolError(f"{what}: response of {declared} bytes exceeds the {limit} limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise FhirProtocolError(f"{what}: response exceeds the {limit} byte limit")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise FhirProtocolError(
            f"{what}: HTTP {response.status} body from {redact_url(str(response.url))} is not JSON"
        ) from exc


@dataclass
class RequestStats:
    """Counters for reports and benchmarks (no URLs, no bodies)."""

    requests: int = 0
    retries: int = 0
    renewals_on_401: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class FhirClient:
    """A FHIR server at ``base_url``, used as ``async with FhirClient(...) as client``."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthProvider | None = None,
        retry: RetryPolicy | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        session: aiohttp.ClientSession | None = None,
        trusted_origins: Iterable[str] = (),
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        on_retry: RetryHook | None = None,
        connection_limit: int = 8,
        allow_insecure: bool = False,
        rebase_links: bool = False,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise FhirSourceError(f"FHIR base URL must be http(s): {redact_url(base_url)!r}")
        if (
            auth is not None
            and urlsplit(base_url).scheme == "http"
            and not (allow_insecure or is_loopback(base_url))
        ):
            raise FhirSourceError(
                "refusing to send an access token over plain http to a non-loopback server; "
                "use https",
                code="FHIR_INSECURE",
            )
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.retry = retry or RetryPolicy()
        self.timeout = timeout or aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
        self.sleep = sleep
        self.clock = clock
        self.on_retry = on_retry
        self.rebase_links = rebase_links
        self.stats = RequestStats()
        self._trusted = {origin_of(self.base_url), *(origin_of(o) for o in trusted_origins)}
        self._session = session
        self._own_session = session is None
        self._connection_limit = connection_limit
        self._capability: ServerCapability | None = None
        self._capability_lock = asyncio.Lock()

    async def __aenter__(self) -> FhirClient:
        self.session  # noqa: B018 - create it inside the running loop
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=self._connection_limit),
                headers={"User-Agent": USER_AGENT},
            )
            # aiohttp silently resends an idempotent request once when a kept-alive
            # connection drops. A GET kick-off is "idempotent" to aiohttp but starts a
            # job on the server: every resend decision must be ours (see ``open``).
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    # ------------------------------------------------------------------ URLs
    def url(self, path_or_url: str) -> str:
        """Absolute URL for a path relative to the base (``Patient``, ``$export``) or a full URL."""
        return urljoin(self.base_url + "/", path_or_url)

    def is_trusted(self, url: str) -> bool:
        return origin_of(url) in self._trusted

    def rebase(self, url: str) -> str:
        """A server-made URL (next link, status URL, file URL), resolved against the base.

        With ``rebase_links`` (opt-in), a URL on an untrusted origin is moved to the
        base URL's origin, path and query unchanged: the fix for servers behind a
        reverse proxy that advertise their internal address (``http://hapi:8080``).
        """
        absolute = self.url(url)
        if not self.rebase_links or self.is_trusted(absolute):
            return absolute
        base, parts = urlsplit(self.base_url), urlsplit(absolute)
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))

    # --------------------------------------------------------------- requests
    @asynccontextmanager
    async def open(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        accept: str | None = FHIR_JSON,
        authenticate: bool | None = None,
        what: str | None = None,
        retry_on: Callable[[int, Any], bool] | None = None,
        retry_statuses: frozenset[int] | None = None,
        resend_safe: bool = True,
        min_wait: float = 0.0,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request with retries; yield the first 2xx response (released on exit).

        ``authenticate=None`` means "if an auth provider is set and the URL's
        origin is trusted"; ``True`` on an untrusted origin is refused (a
        manifest must not be able to send our token elsewhere). ``retry_on``
        adds retryable cases, ``retry_statuses`` replaces the policy's set.
        ``resend_safe=False`` (a kick-off: repeating it may start a second job)
        retries a connection failure only when the connection was never made;
        ``min_wait`` is a floor under every wait (a polling floor).
        """
        target = self.url(url)
        label = what or f"{method} {redact_url(target)}"
        use_auth = self.auth is not None and (authenticate is not False)
        if use_auth and not self.is_trusted(target):
            if authenticate:
                raise FhirSourceError(
                    f"{label}: refusing to send the access token to untrusted origin "
                    f"{origin_of(target)} (add it to trusted origins)",
                    code="FHIR_UNTRUSTED_ORIGIN",
                )
            use_auth = False
        renewed = False
        attempt = 0
        response: aiohttp.ClientResponse | None = None
        while True:
            request_headers: dict[str, str] = {}
            if accept:
                request_headers["Accept"] = accept
            if headers:
                request_headers.update(headers)
            if use_auth:
                assert self.auth is not None
                request_headers["Authorization"] = await self.auth.authorization(
                    self.session, force_renew=renewed and attempt == 0
                )
            self.stats.requests += 1
            try:
                response = await self.session.request(
                    method,
                    # Server-made URLs (next links, status URLs) are sent byte for byte.
                    yarl.URL(target, encoded=True) if params is None else target,
                    params=params,
                    headers=request_headers,
                    data=data,
                )
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                attempt += 1
                if not resend_safe and not isinstance(exc, _NOT_SENT):
                    raise FhirSourceError(
                        f"{label}: the connection failed after the request may have reached the "
                        f"server ({type(exc).__name__}); not resent, because a second request "
                        "could start a second job. Check the server for a running job, then "
                        "run the command again",
                        code="FHIR_REQUEST_UNCERTAIN",
                    ) from exc
                if attempt >= self.retry.max_attempts:
                    raise FhirSourceError(
                        f"{label}: server unreachable after {attempt} attempts ({type(exc).__name__})",
                        code="FHIR_UNREACHABLE",
                    ) from exc
                await self._wait(None, max(min_wait, self.retry.delay(attempt - 1, None)))
                continue
            except (aiohttp.ClientError, ValueError) as exc:
                # Too many redirects, a non-http URL, a malformed header: not worth retrying.
                raise FhirProtocolError(f"{label}: request failed ({type(exc).__name__})") from exc
            status = response.status
            self.stats.statuses[status] = self.stats.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                break
            body = await self._error_body(response)
            response.release()
            if status == 401 and use_auth and not renewed:
                renewed = True
                attempt = 0
                self.stats.renewals_on_401 += 1
                continue
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            statuses = self.retry.retry_statuses if retry_statuses is None else retry_statuses
            retryable = (
                status in statuses
                or is_transient_outcome(body)
                or (retry_on is not None and retry_on(status, body))
            )
            attempt += 1
            if retryable and attempt < self.retry.max_attempts:
                await self._wait(status, max(min_wait, self.retry.delay(attempt - 1, retry_after)))
                continue
            raise self._http_error(label, status, body, attempts=attempt if retryable else 1)
        try:
            yield response
        finally:
            response.release()

    async def _wait(self, status: int | None, delay: float) -> None:
        self.stats.retries += 1
        if self.on_retry is not None:
            self.on_retry(status, delay)
        await self.sleep(delay)

    @staticmethod
    async def _error_body(response: aiohttp.ClientResponse) -> Any:
        try:
            raw = await response.content.read(_ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, TimeoutError):
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None

    @staticmethod
    def _http_error(label: str, status: int, body: Any, *, attempts: int) -> FhirHttpError:
        outcome = summarize_outcome(body)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if status in (401, 403):
            detail = f": {outcome}" if outcome else ""
            return FhirUnauthorizedError(
                f"HTTP {status} from {label}{tries}{detail}", status=status, outcome=outcome
            )
        if outcome is not None:
            return FhirOperationOutcomeError(
                f"HTTP {status} from {label}{tries}: {outcome}", status=status, outcome=outcome
            )
        return FhirHttpError(f"HTTP {status} from {label}{tries}", status=status)

    async def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        what: str | None = None,
    ) -> Any:
        """GET a FHIR JSON resource with retries; raise on errors and non-JSON bodies."""
        async with self.open("GET", url, params=params, what=what) as response:
            return await read_json(response, what=what or f"GET {redact_url(self.url(url))}")

    async def capability(self) -> ServerCapability:
        """The server's CapabilityStatement (``/metadata``), read once per client."""
        from fhir_adapters.sources.capability import parse_capability

        async with self._capability_lock:
            if self._capability is None:
                body = await self.get_json("metadata", what="GET /metadata")
                self._capability = parse_capability(body)
            return self._capability
