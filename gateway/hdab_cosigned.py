"""``POST /permits/cosigned``: a co-issuing HDAB records a cross-border permit it signed.

Once recorded, the permit is listed in this HDAB's own status list and can be
revoked here with ``POST /permits/{jti}/revoke`` like any permit it issued:
every HDAB that signed a permit may revoke it, and the hospital gateways
consult every signer's list (see :meth:`permits.hdab.HdabService.record_cosigned`).
"""

from __future__ import annotations

from aiohttp import web

from gateway.http.routing import RouteSpec, field_str, json_body, json_response, signed
from gateway.status_push import notify


async def post_cosigned(request: web.Request) -> web.Response:
    from gateway.hdab_service import AUDIT_KEY, HDAB_KEY

    token = field_str(json_body(request), "token")
    hdab = request.app[HDAB_KEY]
    version = await request.app[AUDIT_KEY].view.run_sync(lambda: hdab.record_cosigned(token))
    notify(request.app)
    return json_response({"status": "recorded", "status_list_version": version}, status=201)


def cosigned_routes() -> list[RouteSpec]:
    return [
        RouteSpec(
            "POST",
            "/permits/cosigned",
            post_cosigned,
            "Record a cross-border permit this HDAB co-signed, so it can revoke it",
            "permits",
            **signed("hdab_staff"),
            request_schema={
                "type": "object",
                "required": ["token"],
                "properties": {"token": {"type": "string"}},
            },
            response_schema={"type": "object"},
            status=201,
            responses={409: "Not signed by this HDAB or not naming it (HDAB_BAD_STATE)"},
        )
    ]


__all__ = ["cosigned_routes", "post_cosigned"]
