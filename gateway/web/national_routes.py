"""The hub's routes of the national check (PROTOCOL §6, §7): pseudonym evaluation and
known-checks. Thin: parse, call the service, render."""

from __future__ import annotations

from aiohttp import web

from gateway.models import EvaluateIn, KnownCheckIn
from gateway.web.hub_routes import done, parse
from gateway.web.state import HUB, auth_of

routes = web.RouteTableDef()


@routes.post("/api/v1/pseudonyms/evaluate")
async def evaluate(request: web.Request) -> web.Response:
    req, _ = parse(request, EvaluateIn)
    hub = request.app[HUB]
    return web.json_response(await hub.national.evaluate(auth_of(request), req))


@routes.post("/api/v1/known-checks")
async def known_check(request: web.Request) -> web.Response:
    req, _ = parse(request, KnownCheckIn)
    return done(await request.app[HUB].national.known_check(auth_of(request), req))
