"""A small, picky aiohttp FHIR server for tests and the demo.

Serves any list of resources (or an NDJSON folder) at ``http://host:port/fhir``:

- ``GET /metadata`` - a CapabilityStatement declaring system/Patient/Group ``$export``;
- ``GET /{type}?...`` - search with paging (``_count``, ``Bundle.link[next]``),
  a few real search parameters, 400 OperationOutcome on unknown ones;
- ``$export`` at system, Patient and Group level (IG 3.0.0), with configurable
  delays (``Retry-After``, ``X-Progress``), failures (5xx, 429, transient),
  an ``error`` file of OperationOutcomes, a ``deleted`` file, gzip, garbage lines;
- the ways real servers differ from the happy path: throttling with 429 and
  ``Retry-After`` as an absolute epoch (milliseconds first, then seconds),
  manifests in pages (``allowPartialManifests``, ``link`` next), failed types
  listed under ``error[]``, files that expire (410), search pages that repeat
  an id at their boundary, and data that changes (``upsert``/``delete``, with
  ``_since`` exports listing deletions and ``[type]/_history`` showing them);
- SMART Backend Services: ``.well-known/smart-configuration`` and a token
  endpoint that verifies the ``private_key_jwt`` client assertion against a
  registered JWKS (alg pinned to key type, aud, exp <= 5 min, jti replay).

Use ``async with FhirTestServer(ServerConfig(...)) as server: server.base_url``,
or run standalone: ``python -m fhir_adapters.testing.fhir_test_server --ndjson DIR``.

It shares no code with the client in ``fhir_adapters.sources`` (its NDJSON
reading and writing are its own, below): a misreading of the spec on one side
must not cancel out on the other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip as gzip_lib
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from jwcrypto import jwk, jws
from multidict import MultiDict

PREFIX = "/fhir"
TOKEN_PATH = "/auth/token"
FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
_REF_PARAMS = ("patient", "subject")


# ----------------------------------------------------------------- config
@dataclass
class ExportBehaviour:
    """How ``$export`` jobs behave. Lists of statuses are consumed one per request."""

    polls_before_ready: int = 1
    retry_after: str | None = "0"
    progress: bool = True
    hold: bool = False  # 202 forever until ``server.release_exports()``
    kickoff_failures: list[int] = field(default_factory=list)
    poll_failures: list[int] = field(default_factory=list)
    download_failures: list[int] = field(default_factory=list)
    fail_job: bool = False  # status answers 500 + OperationOutcome (job failed)
    transient_outcome_failures: int = 0  # polls answered 503 + transient OperationOutcome
    errors: list[dict[str, Any]] = field(default_factory=list)  # OperationOutcomes
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (type, id)
    requires_access_token: bool = True  # only meaningful with SMART on
    gzip: str = "encoding"  # encoding | body | none
    resources_per_file: int = 1000
    bad_lines: int = 0  # garbage lines injected into the first output file
    truncated_downloads: int = 0  # downloads cut off mid-body (connection dropped)
    # 202 ``Retry-After`` as an absolute epoch ("s" or "ms") ``retry_after`` seconds ahead.
    retry_after_epoch: str | None = None
    # The first N status polls answer 429 with an absolute-epoch Retry-After
    # ``throttle_seconds`` ahead: milliseconds on the first, seconds after (as seen in the wild).
    throttle_polls: int = 0
    throttle_seconds: float = 1.0
    # With ``allowPartialManifests``: manifest pages of this many output entries.
    manifest_page_size: int | None = None
    # These types fail: no output, one error file each (OperationOutcome naming the type).
    fail_types: tuple[str, ...] = ()
    # After this many downloads of a job, its files are gone (410).
    expire_after_downloads: int | None = None
    # Injected 5xx failures carry a transient OperationOutcome (else "processing": not transient).
    failures_transient: bool = True
    # Kick-offs whose connection is dropped after the request was read (no answer at all).
    kickoff_dropped: int = 0
    # The last resource of each output file is repeated at the start of the next one
    # (servers paging through a table that changes under them do this).
    repeat_ids_across_files: bool = False


@dataclass
class SmartSettings:
    clients: dict[str, dict[str, Any]]  # client_id -> public JWKS ({"keys": [...]})
    token_lifetime: int = 300
    scopes: tuple[str, ...] = ("system/*.rs", "system/*.read")


@dataclass
class ServerConfig:
    resources: Sequence[Mapping[str, Any]] = ()
    ndjson_dir: Path | None = None
    fhir_version: str = "4.0.1"
    default_page_size: int = 20
    max_page_size: int = 500
    search_failures: list[int] = field(default_factory=list)
    # Search pages overlap by one resource (the last of a page is the first of the next).
    repeat_ids_across_pages: bool = False
    export: ExportBehaviour = field(default_factory=ExportBehaviour)
    smart: SmartSettings | None = None


def ndjson_bytes(resources: Iterable[Mapping[str, Any]]) -> bytes:
    """This server's own NDJSON writer: one compact JSON object per line, ``\\n`` after each."""
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def load_ndjson_dir(path: Path) -> list[dict[str, Any]]:
    """Every resource in ``*.ndjson`` / ``*.ndjson.gz`` under ``path`` (bad lines skipped)."""
    out: list[dict[str, Any]] = []
    for file in sorted([*path.rglob("*.ndjson"), *path.rglob("*.ndjson.gz")]):
        opener = gzip_lib.open if file.suffix == ".gz" else open
        with opener(file, "rb") as fh:
            for raw in fh:
                line = raw.strip()
                if not line:
                    continue
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
                    out.append(value)
    return out


def sample_resources(
    patients: int = 10, observations_per_patient: int = 3, *, group_size: int | None = None
) -> list[dict[str, Any]]:
    """A tiny deterministic cohort: Patients, glucose Observations, one Group of the first ones."""
    out: list[dict[str, Any]] = []
    for i in range(patients):
        pid = f"p{i:04d}"
        out.append(
            {
                "resourceType": "Patient",
                "id": pid,
                "meta": {"lastUpdated": f"2024-01-{1 + i % 28:02d}T00:00:00Z"},
                "gender": "female" if i % 2 else "male",
                "birthDate": f"{1940 + i % 60}-01-01",
            }
        )
        for j in range(observations_per_patient):
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"o{i:04d}-{j}",
                    "meta": {"lastUpdated": f"2024-02-{1 + j % 28:02d}T00:00:00Z"},
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "valueQuantity": {"value": 90 + (i * 7 + j) % 60, "unit": "mg/dL"},
                }
            )
    size = patients // 2 if group_size is None else group_size
    out.append(
        {
            "resourceType": "Group",
            "id": "cohort",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/p{i:04d}"}} for i in range(size)],
        }
    )
    return out


# ----------------------------------------------------------------- helpers
def outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def fhir_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=FHIR_JSON, headers=headers
    )


def error(
    status: int, code: str, diagnostics: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return fhir_response(outcome(code, diagnostics), status, headers)


def _ref_ids(resource: Mapping[str, Any]) -> set[str]:
    """``Patient/<id>`` references of a resource's subject/patient."""
    refs: set[str] = set()
    for key in _REF_PARAMS:
        value = resource.get(key)
        if isinstance(value, Mapping) and isinstance(value.get("reference"), str):
            refs.add(value["reference"])
    return refs


def _last_updated(resource: Mapping[str, Any]) -> str | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) else None


def _epoch(when: float, unit: str) -> str:
    """An absolute Unix time as some servers put it in ``Retry-After``."""
    return str(int(when * 1000)) if unit == "ms" else str(int(when) + 1)


def _instant_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _matches_token(resource: Mapping[str, Any], value: str) -> bool:
    system, _, code = value.rpartition("|") if "|" in value else ("", "", value)
    concept = resource.get("code")
    codings = concept.get("coding") if isinstance(concept, Mapping) else None
    for coding in codings or []:
        if coding.get("code") == code and (not system or coding.get("system") == system):
            return True
    return False


def _compare_date(actual: str | None, expr: str) -> bool:
    if actual is None:
        return False
    prefix = expr[:2] if expr[:2] in ("ge", "gt", "le", "lt", "eq") else "eq"
    text = expr[2:] if expr[:2] == prefix else expr
    a, b = _parse_instant(actual), _parse_instant(text if "T" in text else text + "T00:00:00Z")
    return {
        "ge": a >= b,
        "gt": a > b,
        "le": a <= b,
        "lt": a < b,
        "eq": a == b,
    }[prefix]


SEARCH_PARAMS = {"_id", "patient", "subject", "code", "status", "_lastUpdated"}
CONTROL_PARAMS = {"_count", "_offset", "_format"}


def match(resource: Mapping[str, Any], params: Iterable[tuple[str, str]]) -> bool:
    for name, value in params:
        if name == "_id":
            if resource.get("id") not in value.split(","):
                return False
        elif name in _REF_PARAMS:
            wanted = {v if "/" in v else f"Patient/{v}" for v in value.split(",")}
            if not _ref_ids(resource) & wanted:
                return False
        elif name == "code":
            if not any(_matches_token(resource, v) for v in value.split(",")):
                return False
        elif name == "status":
            if resource.get("status") not in value.split(","):
                return False
        elif name == "_lastUpdated" and not _compare_date(_last_updated(resource), value):
            return False
    return True


# ------------------------------------------------------------------ server
@dataclass
class _Job:
    id: str
    files: dict[str, bytes]  # name -> NDJSON bytes
    manifest: dict[str, Any]
    polls: int = 0
    deleted: bool = False
    downloads: int = 0
    expired: bool = False
    pages: list[dict[str, Any]] = field(default_factory=list)


class FhirTestServer:
    """The server; counters in ``self.counts`` (kickoff, poll, download, delete, token, ...)."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        resources = list(self.config.resources)
        if self.config.ndjson_dir is not None:
            resources.extend(load_ndjson_dir(Path(self.config.ndjson_dir)))
        self.by_type: dict[str, list[dict[str, Any]]] = {}
        for r in resources:
            self.by_type.setdefault(str(r["resourceType"]), []).append(dict(r))
        self.counts: Counter[str] = Counter()
        self.tombstones: list[tuple[str, str, str]] = []  # (type, id, instant deleted)
        self.poll_throttles = 0
        self.kickoff_queries: list[dict[str, str]] = []  # parameters of each accepted kick-off
        self.jobs: dict[str, _Job] = {}
        self.tokens: dict[str, tuple[str, float]] = {}
        self.seen_jti: set[str] = set()
        self.base_url = ""
        self.origin = ""
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    # ---- lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sock = server.sockets[0]  # type: ignore[attr-defined]
        real_port = sock.getsockname()[1]
        self.origin = f"http://{host}:{real_port}"
        self.base_url = self.origin + PREFIX
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FhirTestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- test controls
    def expire_tokens(self) -> None:
        """Make every issued token invalid now (as if it had expired)."""
        self.tokens = {t: (c, 0.0) for t, (c, _) in self.tokens.items()}

    def release_exports(self) -> None:
        self.config.export.hold = False

    def expire_files(self) -> None:
        """Every file of every job answers 410 from now on (the server cleaned up)."""
        for job in self.jobs.values():
            job.expired = True

    def upsert(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Add or replace a resource, stamping ``meta.lastUpdated`` now."""
        stored = dict(resource)
        stored["meta"] = {**(stored.get("meta") or {}), "lastUpdated": _instant_now()}
        rtype, rid = str(stored["resourceType"]), stored.get("id")
        bucket = self.by_type.setdefault(rtype, [])
        bucket[:] = [r for r in bucket if r.get("id") != rid]
        bucket.append(stored)
        self.tombstones = [t for t in self.tombstones if (t[0], t[1]) != (rtype, rid)]
        return stored

    def delete(self, rtype: str, rid: str) -> None:
        """Delete a resource; ``_since`` exports and ``_history`` report it afterwards."""
        bucket = self.by_type.get(rtype, [])
        bucket[:] = [r for r in bucket if r.get("id") != rid]
        self.tombstones.append((rtype, rid, _instant_now()))

    @property
    def token_url(self) -> str:
        return self.origin + TOKEN_PATH

    # ---- app
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_middleware])
        p = PREFIX
        app.router.add_get(p + "/metadata", self.metadata)
        app.router.add_get(p + "/.well-known/smart-configuration", self.smart_configuration)
        app.router.add_post(TOKEN_PATH, self.token)
        app.router.add_get(p + "/$export", self.kickoff)
        app.router.add_get(p + "/Patient/$export", self.kickoff)
        app.router.add_get(p + "/Group/{group}/$export", self.kickoff)
        app.router.add_post(p + "/$export", self.kickoff)
        app.router.add_post(p + "/Patient/$export", self.kickoff)
        app.router.add_post(p + "/Group/{group}/$export", self.kickoff)
        app.router.add_get(p + "/_export/status/{job}", self.status)
        app.router.add_delete(p + "/_export/status/{job}", self.delete_job)
        app.router.add_get(p + "/_export/files/{job}/{name}", self.download)
        app.router.add_get(p + "/_export/manifest/{job}/{page}", self.manifest_page)
        app.router.add_get(p + "/{type}/_history", self.history)
        app.router.add_get(p + "/{type}", self.search)
        app.router.add_get(p + "/{type}/{id}", self.read)
        return app

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.counts["requests"] += 1
        smart = self.config.smart
        path = request.path
        open_paths = (PREFIX + "/metadata", PREFIX + "/.well-known/smart-configuration", TOKEN_PATH)
        if smart is None or path in open_paths:
            return await handler(request)
        if (
            path.startswith(PREFIX + "/_export/files/")
            and not self.config.export.requires_access_token
        ):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        entry = self.tokens.get(token)
        if entry is None or entry[1] <= time.time():
            self.counts["unauthorized"] += 1
            return error(401, "login", "access token missing, unknown or expired")
        return await handler(request)

    def _accepts_json(self, request: web.Request) -> bool:
        accept = request.headers.get("Accept", "*/*")
        fmt = request.query.get("_format")
        if fmt is not None:
            return fmt in ("json", FHIR_JSON, "application/json")
        return any(t in accept for t in (FHIR_JSON, "application/json", "*/*"))

    # ---- capability & SMART
    async def metadata(self, request: web.Request) -> web.Response:
        self.counts["metadata"] += 1
        export_op = [
            {
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
            }
        ]
        resources = [
            {"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}]}
            for t in sorted(self.by_type)
        ]
        for t in ("Patient", "Group"):
            entry = next((r for r in resources if r["type"] == t), None)
            if entry is None:
                entry = {"type": t, "interaction": [{"code": "read"}]}
                resources.append(entry)
            entry["operation"] = [
                {
                    "name": "export",
                    "definition": f"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{t.lower()}-export",
                }
            ]
        body = {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "date": "2026-01-01",
            "fhirVersion": self.config.fhir_version,
            "format": ["json", FHIR_JSON],
            "software": {"name": "ehds-test-fhir-server", "version": "1"},
            "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
            "rest": [{"mode": "server", "resource": resources, "operation": export_op}],
        }
        return fhir_response(body)

    async def smart_configuration(self, request: web.Request) -> web.Response:
        if self.config.smart is None:
            return error(404, "not-found", "SMART is not enabled on this server")
        return web.json_response(
            {
                "token_endpoint": self.token_url,
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "scopes_supported": list(self.config.smart.scopes),
                "capabilities": ["client-confidential-asymmetric"],
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        self.counts["token"] += 1
        smart = self.config.smart
        if smart is None:
            return web.json_response({"error": "invalid_request"}, status=400)
        form = await request.post()

        def refuse(description: str, err: str = "invalid_client") -> web.Response:
            self.counts["token_refused"] += 1
            return web.json_response(
                {"error": err, "error_description": description},
                status=401 if err == "invalid_client" else 400,
            )

        if form.get("grant_type") != "client_credentials":
            return refuse("grant_type must be client_credentials", "unsupported_grant_type")
        if (
            form.get("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return refuse("bad client_assertion_type")
        assertion = form.get("client_assertion")
        if not isinstance(assertion, str):
            return refuse("client_assertion missing")
        try:
            token = jws.JWS()
            token.deserialize(assertion)
            header = token.jose_header
            unverified = orjson.loads(token.objects["payload"])
        except Exception:
            return refuse("client_assertion is not a JWS")
        client_id = unverified.get("iss") if isinstance(unverified, dict) else None
        if not isinstance(client_id, str) or client_id not in smart.clients:
            return refuse("unknown client")
        alg = header.get("alg")
        if alg not in ("RS384", "ES384"):
            return refuse("alg must be RS384 or ES384")
        keyset = jwk.JWKSet.from_json(orjson.dumps(smart.clients[client_id]).decode())
        key = keyset.get_key(header.get("kid", ""))
        if key is None:
            return refuse("unknown kid")
        expected = "RS384" if key.get("kty") == "RSA" else "ES384"
        if alg != expected:
            return refuse("alg does not match the registered key")
        try:
            token.verify(key, alg=alg)
        except Exception:
            return refuse("client_assertion signature invalid")
        claims = orjson.loads(token.payload)
        now = time.time()
        exp = claims.get("exp")
        if claims.get("sub") != client_id or claims.get("aud") != self.token_url:
            return refuse("iss/sub/aud mismatch")
        if not isinstance(exp, int) or exp <= now or exp > now + 300 + 10:
            return refuse("exp must be in the future and at most 5 minutes ahead")
        jti = claims.get("jti")
        if not isinstance(jti, str) or jti in self.seen_jti:
            return refuse("jti missing or replayed")
        self.seen_jti.add(jti)
        scope = str(form.get("scope") or "system/*.rs")
        access = secrets.token_urlsafe(24)
        self.tokens[access] = (client_id, now + smart.token_lifetime)
        self.counts["token_issued"] += 1
        return web.json_response(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": smart.token_lifetime,
                "scope": scope,
            }
        )

    # ---- search & read
    def _failure(self, pending: list[int], what: str) -> web.Response | None:
        if not pending:
            return None
        status = pending.pop(0)
        self.counts[f"{what}_failed"] += 1
        if status == 429:
            return error(429, "throttled", "too many requests", {"Retry-After": "0"})
        transient = status >= 500 and self.config.export.failures_transient
        return error(status, "transient" if transient else "processing", f"injected {status}")

    async def search(self, request: web.Request) -> web.Response:
        self.counts["search"] += 1
        rtype = request.match_info["type"]
        if not self._accepts_json(request):
            return error(406, "not-supported", "only application/fhir+json is served")
        failure = self._failure(self.config.search_failures, "search")
        if failure is not None:
            return failure
        if rtype not in self.by_type and not rtype[:1].isupper():
            return error(404, "not-found", f"Unknown resource type '{rtype}'")
        params = [(k, v) for k, v in request.query.items() if k not in CONTROL_PARAMS]
        for name, _ in params:
            if name not in SEARCH_PARAMS:
                return error(400, "not-supported", f"Unknown search parameter '{name}' for {rtype}")
        try:
            count = min(
                int(request.query.get("_count", self.config.default_page_size)),
                self.config.max_page_size,
            )
            offset = int(request.query.get("_offset", "0"))
        except ValueError:
            return error(400, "invalid", "_count and _offset must be integers")
        if count < 1 or offset < 0:
            return error(400, "invalid", "_count must be >= 1")
        matches = [r for r in self.by_type.get(rtype, []) if match(r, params)]
        page = matches[offset : offset + count]
        self_query = "&".join(f"{k}={v}" for k, v in params)
        base = f"{self.base_url}/{rtype}?{self_query}{'&' if self_query else ''}_count={count}"
        links = [{"relation": "self", "url": f"{base}&_offset={offset}"}]
        if offset + count < len(matches):
            step = count - 1 if self.config.repeat_ids_across_pages and count > 1 else count
            links.append({"relation": "next", "url": f"{base}&_offset={offset + step}"})
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{self.base_url}/{rtype}/{r.get('id')}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in page
            ],
        }
        return fhir_response(bundle)

    async def read(self, request: web.Request) -> web.Response:
        rtype, rid = request.match_info["type"], request.match_info["id"]
        for r in self.by_type.get(rtype, []):
            if r.get("id") == rid:
                return fhir_response(r)
        return error(404, "not-found", f"{rtype}/{rid} not found")

    # ---- $export
    @staticmethod
    def _post_parameters(body: Any) -> tuple[MultiDict[str], set[str]] | web.Response:
        """A kick-off ``Parameters`` resource -> (query-like parameters, patient references)."""
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            return error(400, "invalid", "POST $export needs a Parameters resource")
        params: MultiDict[str] = MultiDict()
        patients: set[str] = set()
        for p in body.get("parameter", []):
            name = p.get("name")
            if name == "patient":
                ref = (p.get("valueReference") or {}).get("reference")
                if not isinstance(ref, str) or not ref.startswith("Patient/"):
                    return error(400, "invalid", "patient must be a Patient reference")
                patients.add(ref)
                continue
            values = [v for k, v in p.items() if k.startswith("value")]
            if len(values) == 1 and isinstance(values[0], bool):
                values = ["true" if values[0] else "false"]
            if not isinstance(name, str) or len(values) != 1 or not isinstance(values[0], str):
                return error(400, "invalid", f"bad kick-off parameter {name!r}")
            params.add(name, values[0])
        return params, patients

    def _export_selection(
        self, request: web.Request, q: Mapping[str, str], only: set[str] | None
    ) -> list[dict[str, Any]] | web.Response:
        types = [t for t in q.get("_type", "").split(",") if t]
        since = q.get("_since")
        until = q.get("_until")
        filters: dict[str, list[list[tuple[str, str]]]] = {}
        for f in q.getall("_typeFilter", []):  # type: ignore[attr-defined]
            ftype, _, query = f.partition("?")
            pairs = [tuple(p.split("=", 1)) for p in query.split("&") if "=" in p]
            for name, _v in pairs:
                if name not in SEARCH_PARAMS:
                    return error(
                        400, "not-supported", f"_typeFilter parameter '{name}' is not supported"
                    )
            filters.setdefault(ftype, []).append([(a, b) for a, b in pairs])
        try:
            since_dt = _parse_instant(since) if since else None
            until_dt = _parse_instant(until) if until else None
        except ValueError:
            return error(400, "invalid", "_since/_until must be FHIR instants")
        patients: set[str] | None = None
        if request.path.endswith("/Patient/$export"):
            patients = {f"Patient/{p.get('id')}" for p in self.by_type.get("Patient", [])}
        elif "group" in request.match_info:
            gid = request.match_info["group"]
            group = next((g for g in self.by_type.get("Group", []) if g.get("id") == gid), None)
            if group is None:
                return error(404, "not-found", f"Group/{gid} not found")
            patients = {
                m["entity"]["reference"]
                for m in group.get("member", [])
                if isinstance(m, dict)
                and isinstance(m.get("entity"), dict)
                and "reference" in m["entity"]
            }
        if only:
            if patients is None:
                return error(
                    400, "invalid", "the patient parameter needs a Patient or Group export"
                )
            unknown = only - patients
            if unknown:
                return error(
                    404, "not-found", f"{len(unknown)} requested patients are not in scope"
                )
            patients = only
        selected: list[dict[str, Any]] = []
        for rtype in sorted(self.by_type):
            if types and rtype not in types:
                continue
            if patients is not None and rtype == "Group":
                continue
            for r in self.by_type[rtype]:
                if patients is not None:
                    own = f"Patient/{r.get('id')}" if rtype == "Patient" else None
                    if own not in patients and not (_ref_ids(r) & patients):
                        continue
                lu = _last_updated(r)
                if since_dt is not None and (lu is None or _parse_instant(lu) <= since_dt):
                    continue
                if until_dt is not None and lu is not None and _parse_instant(lu) > until_dt:
                    continue
                if rtype in filters and not any(match(r, f) for f in filters[rtype]):
                    continue
                selected.append(r)
        return selected

    async def kickoff(self, request: web.Request) -> web.Response:
        self.counts["kickoff"] += 1
        behaviour = self.config.export
        failure = self._failure(behaviour.kickoff_failures, "kickoff")
        if failure is not None:
            return failure
        if behaviour.kickoff_dropped > 0:
            behaviour.kickoff_dropped -= 1
            self.counts["kickoff_dropped"] += 1
            await request.read()
            assert request.transport is not None
            request.transport.close()  # the job may have started; the client never hears
            return web.Response(status=202)
        if request.headers.get("Prefer", "").lower() != "respond-async":
            return error(400, "invalid", "Prefer: respond-async is required")
        if FHIR_JSON not in request.headers.get("Accept", ""):
            return error(400, "invalid", "Accept: application/fhir+json is required")
        query: Mapping[str, str] = request.query
        only: set[str] | None = None
        if request.method == "POST":
            if FHIR_JSON not in request.headers.get("Content-Type", ""):
                return error(
                    415, "invalid", "POST $export needs Content-Type application/fhir+json"
                )
            try:
                parsed = self._post_parameters(orjson.loads(await request.read()))
            except orjson.JSONDecodeError:
                return error(400, "invalid", "POST body is not JSON")
            if isinstance(parsed, web.Response):
                return parsed
            query, only = parsed
        self.kickoff_queries.append({k: str(v) for k, v in query.items()})
        fmt = query.get("_outputFormat", NDJSON)
        if fmt not in (NDJSON, "application/ndjson", "ndjson"):
            return error(400, "not-supported", f"_outputFormat {fmt} is not supported")
        selection = self._export_selection(request, query, only)
        if isinstance(selection, web.Response):
            return selection
        job_id = uuid.uuid4().hex
        files: dict[str, bytes] = {}
        output: list[dict[str, Any]] = []
        per_type: dict[str, list[dict[str, Any]]] = {}
        failed = set(behaviour.fail_types)
        for r in selection:
            if r["resourceType"] not in failed:
                per_type.setdefault(r["resourceType"], []).append(r)
        injected = False
        for rtype, lines in per_type.items():
            size = behaviour.resources_per_file
            for i in range(0, len(lines), size):
                chunk = lines[i : i + size]
                if behaviour.repeat_ids_across_files and i > 0:
                    chunk = [lines[i - 1], *chunk]
                body = ndjson_bytes(chunk)
                if not injected and behaviour.bad_lines:
                    body += b"{not json\n" * behaviour.bad_lines
                    injected = True
                name = f"{rtype}-{i // size}.ndjson"
                files[name] = body
                output.append(
                    {"type": rtype, "url": self._file_url(job_id, name), "count": len(chunk)}
                )
        errors_out: list[dict[str, Any]] = []
        if behaviour.errors:
            files["errors.ndjson"] = ndjson_bytes(behaviour.errors)
            errors_out.append(
                {"type": "OperationOutcome", "url": self._file_url(job_id, "errors.ndjson")}
            )
        for rtype in sorted(failed):
            wanted = [t for t in query.get("_type", "").split(",") if t]
            if wanted and rtype not in wanted:
                continue
            name = f"errors-{rtype}.ndjson"
            problem = outcome("exception", f"Failed to export {rtype}: the store timed out")
            problem["issue"][0]["expression"] = [rtype]
            files[name] = ndjson_bytes([problem])
            errors_out.append({"type": "OperationOutcome", "url": self._file_url(job_id, name)})
        gone = list(behaviour.deleted)
        since = query.get("_since")
        if since:
            with contextlib.suppress(ValueError):
                since_dt = _parse_instant(since)
                gone += [(t, i) for t, i, w in self.tombstones if _parse_instant(w) > since_dt]
        deleted_out: list[dict[str, Any]] = []
        if gone:
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "DELETE", "url": f"{t}/{i}"}} for t, i in gone],
            }
            files["deleted.ndjson"] = ndjson_bytes([bundle])
            deleted_out.append({"type": "Bundle", "url": self._file_url(job_id, "deleted.ndjson")})
        manifest = {
            "transactionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "request": str(request.url),  # for POST, the URL without the body
            "requiresAccessToken": bool(
                self.config.smart is not None and behaviour.requires_access_token
            ),
            "output": output,
            "error": errors_out,
            "deleted": deleted_out,
        }
        job = _Job(id=job_id, files=files, manifest=manifest)
        partial = str(query.get("allowPartialManifests", "")).lower() == "true"
        page_size = behaviour.manifest_page_size
        if partial and page_size and len(output) > page_size:
            chunks = [output[i : i + page_size] for i in range(0, len(output), page_size)]
            for n, entries in enumerate(chunks):
                page = {**manifest, "output": entries}
                if n > 0:  # errors and deletions on the first page only
                    page["error"], page["deleted"] = [], []
                if n + 1 < len(chunks):
                    url = f"{self.base_url}/_export/manifest/{job_id}/{n + 1}"
                    page["link"] = [{"relation": "next", "url": url}]
                job.pages.append(page)
        self.jobs[job_id] = job
        return web.Response(
            status=202,
            headers={"Content-Location": f"{PREFIX}/_export/status/{job_id}"},
        )

    def _file_url(self, job: str, name: str) -> str:
        return f"{self.base_url}/_export/files/{job}/{name}"

    async def status(self, request: web.Request) -> web.Response:
        self.counts["poll"] += 1
        behaviour = self.config.export
        job = self.jobs.get(request.match_info["job"])
        if job is None or job.deleted:
            return error(404, "not-found", "no such export job")
        failure = self._failure(behaviour.poll_failures, "poll")
        if failure is not None:
            return failure
        if behaviour.throttle_polls > 0:
            behaviour.throttle_polls -= 1
            self.poll_throttles += 1
            self.counts["poll_throttled"] += 1
            unit = "ms" if self.poll_throttles == 1 else "s"
            return error(
                429,
                "throttled",
                "too many requests",
                {"Retry-After": _epoch(time.time() + behaviour.throttle_seconds, unit)},
            )
        if behaviour.transient_outcome_failures > 0:
            behaviour.transient_outcome_failures -= 1
            return error(500, "transient", "database busy, try again")
        if behaviour.fail_job:
            return error(500, "processing", "export failed: the store went away")
        job.polls += 1
        if behaviour.hold or job.polls <= behaviour.polls_before_ready:
            headers: dict[str, str] = {}
            if behaviour.retry_after is not None and behaviour.retry_after_epoch:
                headers["Retry-After"] = _epoch(
                    time.time() + float(behaviour.retry_after), behaviour.retry_after_epoch
                )
            elif behaviour.retry_after is not None:
                headers["Retry-After"] = behaviour.retry_after
            if behaviour.progress:
                pct = 100 * job.polls // (behaviour.polls_before_ready + 1)
                headers["X-Progress"] = f"{pct}% complete" if not behaviour.hold else "waiting"
            return web.Response(status=202, headers=headers)
        first = job.pages[0] if job.pages else job.manifest
        return web.json_response(first, headers={"Expires": "Fri, 01 Jan 2100 00:00:00 GMT"})

    async def manifest_page(self, request: web.Request) -> web.Response:
        self.counts["manifest_page"] += 1
        job = self.jobs.get(request.match_info["job"])
        if job is None or job.deleted:
            return error(404, "not-found", "no such export job")
        try:
            page = job.pages[int(request.match_info["page"])]
        except (ValueError, IndexError):
            return error(404, "not-found", "no such manifest page")
        return web.json_response(page)

    async def history(self, request: web.Request) -> web.Response:
        """``[type]/_history?_since=``: a history Bundle (updates and deletions, one page)."""
        self.counts["history"] += 1
        rtype = request.match_info["type"]
        since = request.query.get("_since")
        try:
            since_dt = _parse_instant(since) if since else None
        except ValueError:
            return error(400, "invalid", "_since must be a FHIR instant")
        entries: list[dict[str, Any]] = []
        for r in self.by_type.get(rtype, []):
            lu = _last_updated(r)
            if since_dt is None or (lu is not None and _parse_instant(lu) > since_dt):
                entries.append(
                    {"resource": r, "request": {"method": "PUT", "url": f"{rtype}/{r.get('id')}"}}
                )
        for ttype, tid, when in self.tombstones:
            if ttype == rtype and (since_dt is None or _parse_instant(when) > since_dt):
                entries.append(
                    {
                        "request": {"method": "DELETE", "url": f"{ttype}/{tid}"},
                        "response": {"status": "204", "lastModified": when},
                    }
                )
        return fhir_response(
            {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}
        )

    async def delete_job(self, request: web.Request) -> web.Response:
        self.counts["delete"] += 1
        job = self.jobs.get(request.match_info["job"])
        if job is None or job.deleted:
            return error(404, "not-found", "no such export job")
        job.deleted = True
        return web.Response(status=202)

    async def download(self, request: web.Request) -> web.Response:
        self.counts["download"] += 1
        if "Authorization" in request.headers:
            self.counts["download_with_token"] += 1
        behaviour = self.config.export
        job = self.jobs.get(request.match_info["job"])
        if job is None or job.deleted:
            return error(404, "not-found", "no such export job")
        failure = self._failure(behaviour.download_failures, "download")
        if failure is not None:
            return failure
        limit = behaviour.expire_after_downloads
        if job.expired or (limit is not None and job.downloads >= limit):
            job.expired = True  # once gone, gone for good (a rerun sees the same 410)
            self.counts["download_expired"] += 1
            return error(410, "not-found", "export files have expired")
        job.downloads += 1
        body = job.files.get(request.match_info["name"])
        if body is None:
            return error(404, "not-found", "no such file")
        if behaviour.truncated_downloads > 0:
            behaviour.truncated_downloads -= 1
            self.counts["download_truncated"] += 1
            resp = web.StreamResponse(headers={"Content-Type": NDJSON})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.close()  # the client sees a short body
            return resp  # type: ignore[return-value]
        headers = {}
        if behaviour.gzip == "encoding" and "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip_lib.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        elif behaviour.gzip == "body":
            body = gzip_lib.compress(body, compresslevel=1)
        return web.Response(body=body, content_type=NDJSON, headers=headers)


# ---------------------------------------------------------------- standalone
async def serve(config: ServerConfig, host: str, port: int) -> None:
    server = FhirTestServer(config)
    base = await server.start(host, port)
    types = ", ".join(f"{t}={len(v)}" for t, v in sorted(server.by_type.items()))
    print(f"FHIR test server at {base} ({types or 'empty'})", flush=True)
    if config.smart is not None:
        print(f"SMART token endpoint {server.token_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve NDJSON as a FHIR server with $export")
    parser.add_argument("--ndjson", type=Path, help="folder of NDJSON files to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--page-size", type=int, default=20)
    parser.add_argument("--client-id", help="register a SMART backend client")
    parser.add_argument("--jwks", type=Path, help="public JWKS of that client")
    parser.add_argument(
        "--polls", type=int, default=1, help="202 answers before an export is ready"
    )
    args = parser.parse_args(argv)
    smart = None
    if args.client_id:
        if args.jwks is None:
            parser.error("--client-id needs --jwks")
        smart = SmartSettings(clients={args.client_id: orjson.loads(args.jwks.read_bytes())})
    config = ServerConfig(
        ndjson_dir=args.ndjson,
        default_page_size=args.page_size,
        smart=smart,
        export=ExportBehaviour(polls_before_ready=args.polls, retry_after="1"),
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
