"""Routes of the policy flows (PROTOCOL §7): protocols and accessions,
geheimhoudingsverklaringen, wat-requests and overdue decisions."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.crypto.encoding import sha256
from gateway.errors import InvalidRequest
from gateway.models import REF_PATTERN, AccessionIn, DeclarationIn, WatRequest
from gateway.web.hub_routes import done, parse
from gateway.web.state import HUB, auth_of

routes = web.RouteTableDef()
_REF = re.compile(REF_PATTERN)


def _text(body: bytes) -> web.Response:
    return web.Response(
        body=body,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Text-SHA256": sha256(body).hex()},
    )


@routes.get("/api/v1/protocols")
async def protocols(request: web.Request) -> web.Response:
    auth_of(request)
    return web.json_response({"protocols": await request.app[HUB].membership.protocols()})


@routes.get("/api/v1/protocols/{protocol_id}/text")
async def protocol_text(request: web.Request) -> web.Response:
    auth_of(request)
    hub = request.app[HUB]
    return _text(await hub.membership.protocol_text(request.match_info["protocol_id"]))


@routes.post("/api/v1/protocols/{protocol_id}/accessions")
async def accede(request: web.Request) -> web.Response:
    req, _ = parse(request, AccessionIn)
    hub = request.app[HUB]
    return done(
        await hub.membership.accede(auth_of(request), request.match_info["protocol_id"], req)
    )


@routes.get("/api/v1/declarations/text")
async def declaration_text(request: web.Request) -> web.Response:
    auth = auth_of(request)
    case_ref = request.query.get("case_ref", "")
    if not _REF.fullmatch(case_ref):
        raise InvalidRequest(
            "case_ref is required.",
            errors=[{"loc": ["query", "case_ref"], "msg": "missing or malformed"}],
        )
    return _text(await request.app[HUB].membership.declaration_text_for(auth, case_ref))


@routes.post("/api/v1/declarations")
async def declare(request: web.Request) -> web.Response:
    req, _ = parse(request, DeclarationIn)
    return done(await request.app[HUB].membership.declare(auth_of(request), req))


@routes.post("/api/v1/wat-requests")
async def wat_request(request: web.Request) -> web.Response:
    req, raw = parse(request, WatRequest)
    return done(await request.app[HUB].exchanges.submit_wat(auth_of(request), req, raw))


@routes.get("/api/v1/exchanges/overdue")
async def overdue(request: web.Request) -> web.Response:
    items = await request.app[HUB].exchanges.overdue(auth_of(request))
    return web.json_response({"overdue": items})
