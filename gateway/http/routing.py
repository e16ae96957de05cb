"""Routes declared once, with what OpenAPI, auth and the access log need to know.

Each service lists its routes as :class:`RouteSpec` values. :func:`install`
adds them to the aiohttp router and keeps the specs on the app, so the auth
middleware knows which roles a route needs, the access log names the route
template (never a path with identifiers in it) and ``/openapi.json`` is
generated from the same list it documents. Installing a write route without
authentication is a programming error and raises at start-up: there are no
anonymous writes by construction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import BadJsonError, BadRequestError, GatewayError, ValidationError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAFE_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Param:
    """A path or query parameter, documented in OpenAPI and checked by :func:`query_int`."""

    name: str
    where: str = "query"  # "query" | "path"
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    public: bool = True
    roles: frozenset[str] = frozenset()
    params: tuple[Param, ...] = ()
    request_schema: Mapping[str, Any] | None = None
    response_schema: Mapping[str, Any] | None = None
    response_type: str = JSON_TYPE
    responses: Mapping[int, str] = field(default_factory=dict)
    status: int = 200
    body_type: str | None = JSON_TYPE
    """Required request Content-Type of a write; None = any (e.g. C2SP text bodies)."""
    self_signed: bool = False
    """A public write whose body carries its own signature (a witness's add-checkpoint)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


SPECS_KEY = web.AppKey("ehds_route_specs", dict)
BODY_KEY = web.RequestKey("ehds_body", bytes)
REQUEST_ID_KEY = web.RequestKey("ehds_request_id", str)


def signed(*roles: str) -> dict[str, Any]:
    """Keyword arguments for a route that needs a signed request by one of ``roles``."""
    return {"public": False, "roles": frozenset(roles)}


def install(app: web.Application, specs: list[RouteSpec]) -> None:
    table: dict[tuple[str, str], RouteSpec] = app.get(SPECS_KEY) or {}
    for spec in specs:
        if spec.method not in SAFE_METHODS and spec.public and not spec.self_signed:
            raise GatewayError(f"write route {spec.method} {spec.path} must require a signature")
        route = app.router.add_route(spec.method, spec.path, spec.handler)
        assert route.resource is not None
        key = (spec.method, route.resource.canonical)
        if key in table:
            raise GatewayError(f"route {spec.method} {spec.path} declared twice")
        table[key] = spec
    app[SPECS_KEY] = table


def spec_for(request: web.Request) -> RouteSpec | None:
    """The spec of the matched route, or ``None`` (404/405 handled by aiohttp).

    Keyed by the resource's canonical form (``/permits/{jti}``), the same
    string the access log and metrics use.
    """
    resource = request.match_info.route.resource
    if resource is None:
        return None
    table: dict[tuple[str, str], RouteSpec] = request.app.get(SPECS_KEY, {})
    method = "GET" if request.method == "HEAD" else request.method
    return table.get((method, resource.canonical))


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        content_type=JSON_TYPE,
        headers=headers,
    )


def json_body(request: web.Request) -> dict[str, Any]:
    """The already read and size-checked body as a JSON object, or a 400 problem."""
    raw: bytes = request.get(BODY_KEY, b"")
    if not raw:
        raise BadJsonError("a JSON object body is required")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadJsonError(f"body is not valid JSON (at byte {exc.pos})") from None
    if not isinstance(value, dict):
        raise BadJsonError("body must be a JSON object")
    return value


def field_str(
    data: Mapping[str, Any], name: str, *, required: bool = True, default: str = ""
) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationError(f"field '{name}' is required")
        return default
    if not isinstance(value, str):
        raise ValidationError(f"field '{name}' must be a string")
    return value


def query_int(
    request: web.Request,
    name: str,
    *,
    default: int | None = None,
    minimum: int = 0,
    maximum: int | None = None,
) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise BadRequestError(f"query parameter '{name}' is required", code="PARAMETER_MISSING")
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequestError(
            f"query parameter '{name}' must be a non-negative integer", code="PARAMETER_INVALID"
        )
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise BadRequestError(
            f"query parameter '{name}' must be {bounds}", code="PARAMETER_OUT_OF_RANGE"
        )
    return value


__all__ = [
    "BODY_KEY",
    "JSON_TYPE",
    "REQUEST_ID_KEY",
    "SPECS_KEY",
    "Handler",
    "Param",
    "RouteSpec",
    "field_str",
    "install",
    "json_body",
    "json_response",
    "query_int",
    "signed",
    "spec_for",
]
