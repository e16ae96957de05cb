"""The two middlewares every request passes through.

``observe`` (outermost): request id, timing, the JSON access log line, metrics,
and the one place exceptions become problem+json. Logged are the route
*template*, method, status, durations, sizes, the signer's ``kid`` and the
problem code: never client addresses, query strings, bodies or identifiers.

``guard`` (inner): the body-size limit (checked on ``Content-Length`` before
reading, and while reading for chunked bodies), the JSON content type for
writes, and the signature check for every non-public route. The body is read
once here, so the signature covers exactly the bytes the handler parses.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from http import HTTPStatus

import orjson
from aiohttp import web

from gateway.errors import BodyTooLargeError, GatewayError, UnsupportedMediaTypeError
from gateway.http.auth import PRINCIPAL_KEY, Principal, RequestVerifier, require_role
from gateway.http.metrics import Metrics
from gateway.http.problem import HTTP_CODES, PROBLEM_CODE_KEY, problem_response, status_for_code
from gateway.http.routing import (
    BODY_KEY,
    REQUEST_ID_KEY,
    SAFE_METHODS,
    Handler,
    spec_for,
)

ACCESS_LOG = logging.getLogger("ehds.access")
ERROR_LOG = logging.getLogger("ehds.error")

METRICS_KEY = web.AppKey("ehds_metrics", Metrics)
VERIFIER_KEY = web.AppKey("ehds_verifier", RequestVerifier)
MAX_BODY_KEY = web.AppKey("ehds_max_body", int)
SERVICE_KEY = web.AppKey("ehds_service", str)


def _problem_for(exc: BaseException, request: web.Request) -> web.Response:
    if isinstance(exc, GatewayError):
        return problem_response(exc.status, exc.code, exc.title, str(exc))
    if isinstance(exc, web.HTTPException):
        status = exc.status
        code = HTTP_CODES.get(status, f"HTTP_{status}")
        headers: dict[str, str] = {}
        if status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
            headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        detail: str = {
            413: "request body exceeds the configured limit",
            404: "no such endpoint",
        }.get(status, exc.reason)
        return problem_response(status, code, exc.reason, detail, headers=headers or None)
    err_code = getattr(exc, "code", None)
    if isinstance(err_code, str) and re.match(r"^[A-Z0-9_]{2,64}$", err_code):
        # A domain package refused: its message is ids, hashes and counts by contract.
        declared = getattr(exc, "http_status", None)
        status = declared if isinstance(declared, int) else status_for_code(err_code)
        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Refused"
        return problem_response(status, err_code, title, str(exc) if status < 500 else None)
    return problem_response(500, "INTERNAL_ERROR", "Internal error", "see the service log")


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    # Always ours: a client-chosen id could smuggle a name or patient id into
    # the logs and into audit subjects (``data.extracted`` names the request).
    rid = uuid.uuid4().hex
    request[REQUEST_ID_KEY] = rid
    try:
        response = await handler(request)
    except Exception as exc:
        response = _problem_for(exc, request)
        if response.status >= 500:
            # Type and frames only: messages of unexpected errors may carry anything.
            ERROR_LOG.error(
                orjson.dumps(
                    {
                        "event": "request.error",
                        "request_id": rid,
                        "error": type(exc).__name__,
                        "frames": [
                            f"{f.filename}:{f.lineno}"
                            for f in traceback.extract_tb(exc.__traceback__)
                        ][-5:],
                    }
                ).decode()
            )
    response.headers["X-Request-Id"] = rid
    elapsed = time.perf_counter() - started
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    code = response.get(PROBLEM_CODE_KEY) if isinstance(response, web.Response) else None
    metrics = request.app.get(METRICS_KEY)
    if metrics is not None:
        metrics.observe_request(request.method, route, response.status, elapsed, code)
    if ACCESS_LOG.isEnabledFor(logging.INFO):
        principal: Principal | None = request.get(PRINCIPAL_KEY)
        ACCESS_LOG.info(
            orjson.dumps(
                {
                    "event": "http.request",
                    "service": request.app.get(SERVICE_KEY, ""),
                    "request_id": rid,
                    "method": request.method,
                    "route": route,
                    "status": response.status,
                    "ms": round(elapsed * 1000, 3),
                    "bytes_in": request.content_length or 0,
                    "bytes_out": response.content_length or 0,
                    "kid": principal.kid if principal else None,
                    "code": code,
                }
            ).decode()
        )
    return response


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:  # unmatched: aiohttp answers 404/405
        return await handler(request)
    spec = spec_for(request)
    if spec is None:  # a route installed without a spec: refuse rather than skip auth
        raise GatewayError(
            "route has no declared access policy", code="ROUTE_UNDECLARED", status=500
        )
    limit = request.app[MAX_BODY_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError(f"request body exceeds {limit} bytes")
    if request.method not in SAFE_METHODS:
        want = spec.body_type
        if want is not None and request.can_read_body and request.content_type != want:
            raise UnsupportedMediaTypeError(f"request body must be {want}")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLargeError(f"request body exceeds {limit} bytes") from None
    else:
        if request.can_read_body:
            raise UnsupportedMediaTypeError("this method takes no body")
        body = b""
    request[BODY_KEY] = body
    if not spec.public:
        verifier = request.app[VERIFIER_KEY]
        principal = verifier.verify(
            request.headers.get("Authorization"),
            method="GET" if request.method == "HEAD" else request.method,
            path=request.raw_path,
            body=body,
        )
        require_role(principal, spec.roles)
        request[PRINCIPAL_KEY] = principal
    return await handler(request)


__all__ = ["MAX_BODY_KEY", "METRICS_KEY", "SERVICE_KEY", "VERIFIER_KEY", "guard", "observe"]
