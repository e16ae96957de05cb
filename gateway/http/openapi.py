"""OpenAPI 3.1 generated from the same :class:`RouteSpec` list the router uses.

Generated, not hand-written, so the document cannot drift from the routes; a
test still checks it both ways. Signed routes carry the ``ehdsJws`` security
scheme and list 401/403; every route lists ``default`` as problem+json.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from gateway.http.problem import PROBLEM_TYPE
from gateway.http.routing import RouteSpec

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "pattern": "^[A-Z0-9_]+$", "description": "Stable error code."},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}


def openapi_path(path: str) -> str:
    """aiohttp's ``{name:regex}`` (the regex may hold braces itself) becomes OpenAPI's ``{name}``."""
    out: list[str] = []
    i = 0
    while i < len(path):
        if path[i] != "{":
            out.append(path[i])
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(path) and depth:
            depth += {"{": 1, "}": -1}.get(path[j], 0)
            j += 1
        name = path[i + 1 : j - 1].split(":", 1)[0]
        out.append("{" + name + "}")
        i = j
    return "".join(out)


def _path_params(path: str) -> list[str]:
    return re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", openapi_path(path))


def _operation(spec: RouteSpec) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{spec.method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', openapi_path(spec.path)).strip('_') or 'root'}",
        "summary": spec.summary,
        "tags": [spec.tag],
    }
    params: list[dict[str, Any]] = []
    declared = {p.name for p in spec.params}
    for name in _path_params(spec.path):
        if name not in declared:
            params.append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )
    for p in spec.params:
        item: dict[str, Any] = {
            "name": p.name,
            "in": p.where,
            "required": True if p.where == "path" else p.required,
            "schema": dict(p.schema),
        }
        if p.description:
            item["description"] = p.description
        params.append(item)
    if params:
        op["parameters"] = params
    if spec.request_schema is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": dict(spec.request_schema)}},
        }
    ok: dict[str, Any] = {"description": spec.responses.get(spec.status, "OK")}
    ok["content"] = {spec.response_type: {"schema": dict(spec.response_schema or {})}}
    responses: dict[str, Any] = {str(spec.status): ok}
    for status, text in spec.responses.items():
        if status != spec.status:
            responses[str(status)] = {
                "description": text,
                "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
    if not spec.public:
        op["security"] = [{"ehdsJws": []}]
        responses.setdefault("401", _problem_ref("Missing, invalid or replayed signature"))
        responses.setdefault(
            "403", _problem_ref("The signing key's role does not allow this route")
        )
        if spec.roles:
            op["x-ehds-roles"] = sorted(spec.roles)
    if spec.request_schema is not None:
        responses.setdefault("400", _problem_ref("Body is not a JSON object"))
        responses.setdefault("413", _problem_ref("Body larger than the configured limit"))
        responses.setdefault("415", _problem_ref("Body is not application/json"))
    responses["default"] = _problem_ref("Any other error, as problem+json with a stable code")
    op["responses"] = responses
    return op


def _problem_ref(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def build_openapi(
    specs: Iterable[RouteSpec], *, title: str, version: str, description: str
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in sorted(specs, key=lambda s: (s.path, s.method)):
        paths.setdefault(openapi_path(spec.path), {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {
                "ehdsJws": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": (
                        "`EHDS-JWS <compact JWS>` with header {alg, kid, typ: ehds-req+jwt} and payload "
                        "{htm, htu, aud, bh: sha256 of the body, iat, jti}; see docs/operators.md."
                    ),
                }
            },
        },
    }


__all__ = ["PROBLEM_SCHEMA", "build_openapi", "openapi_path"]
