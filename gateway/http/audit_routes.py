"""Audit log endpoints shared by the HDAB service and the hospital gateway.

Read-only and public by design, like a Certificate Transparency log: the
checkpoint, the entries (signed events: identifiers, codes, hashes and counts
only, by the audit schema) and the RFC 9162 inclusion and consistency proofs
let anyone holding an older checkpoint verify that nothing was altered,
removed or forked. Hashes are lowercase hex.

The handlers only validate parameters and call an :class:`AuditView`, which
serialises database access on one worker thread and caches what can never
change (entries and proofs for a given tree size are immutable), so these
endpoints stay fast under many concurrent clients.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from gateway.errors import NotFoundError
from gateway.http.routing import Param, RouteSpec, json_response, query_int

MAX_PAGE = 1000
AUDIT_VIEW_KEY = web.AppKey("ehds_audit_view", object)

HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
CHECKPOINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["origin", "size", "root", "kid", "note"],
    "properties": {
        "origin": {"type": "string", "description": "Log identity (the checkpoint's origin line)."},
        "size": {"type": "integer", "minimum": 0, "description": "Tree size."},
        "root": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        "kid": {
            "type": ["string", "null"],
            "description": "RFC 7638 thumbprint of the log's signing key.",
        },
        "note": {
            "type": "string",
            "description": "The signed checkpoint, a C2SP tlog-checkpoint signed note; verify this.",
        },
    },
}
ENTRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["index", "leaf_hash", "event"],
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "leaf_hash": HEX32,
        "event": {
            "type": "string",
            "description": "The signed event exactly as logged (compact JWS).",
        },
        "payload": {"type": "object", "description": "The event payload, decoded for convenience."},
    },
}


class AuditView(Protocol):
    """What the HTTP layer needs from an audit log (see ``gateway.audit_view``)."""

    async def tree_size(self) -> int: ...

    async def checkpoint(self) -> dict[str, Any]: ...

    async def entries(self, start: int, end: int) -> list[dict[str, Any]]: ...

    async def inclusion(self, index: int, tree_size: int) -> list[bytes]: ...

    async def consistency(self, first: int, second: int) -> list[bytes]: ...

    async def leaf_hash(self, index: int) -> bytes: ...

    async def inclusion_with_leaf(
        self, index: int, tree_size: int
    ) -> tuple[bytes, list[bytes]]: ...

    async def warm(self) -> int: ...


def view(request: web.Request) -> AuditView:
    return request.app[AUDIT_VIEW_KEY]  # type: ignore[return-value]


async def get_checkpoint(request: web.Request) -> web.Response:
    return json_response(await view(request).checkpoint())


async def get_entries(request: web.Request) -> web.Response:
    audit = view(request)
    size = await audit.tree_size()
    start = query_int(request, "start", default=0)
    limit = query_int(request, "limit", default=100, minimum=1, maximum=MAX_PAGE)
    end = min(size, start + limit)
    entries = await audit.entries(start, end) if start < end else []
    body: dict[str, Any] = {"tree_size": size, "start": start, "entries": entries}
    if end < size:
        body["next"] = f"/audit/entries?start={end}&limit={limit}"
    return json_response(body)


async def get_entry(request: web.Request) -> web.Response:
    raw = request.match_info["index"]
    audit = view(request)
    index = int(raw)
    size = await audit.tree_size()
    if index >= size:
        raise NotFoundError(
            f"no entry {index}: the log has {size} entries", code="AUDIT_OUT_OF_RANGE"
        )
    (entry,) = await audit.entries(index, index + 1)
    return json_response(entry)


async def _size_param(request: web.Request, name: str, current: int) -> int:
    size = query_int(request, name, default=current, minimum=1)
    if size > current:
        raise NotFoundError(
            f"tree size {size} is beyond the log's {current}", code="AUDIT_OUT_OF_RANGE"
        )
    return size


async def get_inclusion(request: web.Request) -> web.Response:
    audit = view(request)
    current = await audit.tree_size()
    index = query_int(request, "index")
    size = await _size_param(request, "tree_size", current)
    if index >= size:
        raise NotFoundError(
            f"index {index} is not below tree size {size}", code="AUDIT_OUT_OF_RANGE"
        )
    leaf, path = await audit.inclusion_with_leaf(index, size)
    return json_response(
        {
            "index": index,
            "tree_size": size,
            "leaf_hash": leaf.hex(),
            "audit_path": [h.hex() for h in path],
        }
    )


async def get_consistency(request: web.Request) -> web.Response:
    audit = view(request)
    current = await audit.tree_size()
    first = query_int(request, "first", minimum=1)
    second = await _size_param(request, "second", current)
    if first > second:
        raise NotFoundError("first must not exceed second", code="AUDIT_OUT_OF_RANGE")
    path = await audit.consistency(first, second)
    return json_response(
        {"first": first, "second": second, "consistency_path": [h.hex() for h in path]}
    )


def audit_routes(*, entries_roles: frozenset[str] | None = None) -> list[RouteSpec]:
    """The shared audit routes; ``entries_roles`` makes entry reads signed (checkpoint and proofs stay public)."""
    tag = "audit"
    entry_access: dict[str, Any] = (
        {} if entries_roles is None else {"public": False, "roles": entries_roles}
    )
    out_of_range = {
        404: "Index or tree size beyond the log (AUDIT_OUT_OF_RANGE)",
        400: "Bad parameter",
    }
    return [
        RouteSpec(
            "GET",
            "/audit/checkpoint",
            get_checkpoint,
            "The newest signed checkpoint (tree head)",
            tag,
            response_schema=CHECKPOINT_SCHEMA,
            responses={503: "Audit log unavailable"},
        ),
        RouteSpec(
            "GET",
            "/audit/entries",
            get_entries,
            "A page of signed entries",
            tag,
            **entry_access,
            params=(
                Param("start", schema={"type": "integer", "minimum": 0, "default": 0}),
                Param(
                    "limit",
                    schema={"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
                ),
            ),
            response_schema={
                "type": "object",
                "properties": {
                    "tree_size": {"type": "integer"},
                    "entries": {"type": "array", "items": ENTRY_SCHEMA},
                    "next": {"type": "string"},
                },
            },
            responses={400: "Bad parameter"},
        ),
        RouteSpec(
            "GET",
            r"/audit/entries/{index:\d{1,18}}",
            get_entry,
            "One signed entry",
            tag,
            **entry_access,
            params=(Param("index", where="path", schema={"type": "integer", "minimum": 0}),),
            response_schema=ENTRY_SCHEMA,
            responses=out_of_range,
        ),
        RouteSpec(
            "GET",
            "/audit/proof/inclusion",
            get_inclusion,
            "RFC 9162 inclusion proof",
            tag,
            params=(
                Param("index", schema={"type": "integer", "minimum": 0}, required=True),
                Param(
                    "tree_size",
                    schema={"type": "integer", "minimum": 1},
                    description="Defaults to the current size.",
                ),
            ),
            response_schema={
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "tree_size": {"type": "integer"},
                    "leaf_hash": HEX32,
                    "audit_path": {"type": "array", "items": HEX32},
                },
            },
            responses=out_of_range,
        ),
        RouteSpec(
            "GET",
            "/audit/proof/consistency",
            get_consistency,
            "RFC 9162 consistency proof",
            tag,
            params=(
                Param("first", schema={"type": "integer", "minimum": 1}, required=True),
                Param(
                    "second",
                    schema={"type": "integer", "minimum": 1},
                    description="Defaults to the current size.",
                ),
            ),
            response_schema={
                "type": "object",
                "properties": {
                    "first": {"type": "integer"},
                    "second": {"type": "integer"},
                    "consistency_path": {"type": "array", "items": HEX32},
                },
            },
            responses=out_of_range,
        ),
    ]


__all__ = ["AUDIT_VIEW_KEY", "AuditView", "audit_routes"]
