"""Ledger routes (PROTOCOL §5): the public checkpoint and proofs, and signed entry reads."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import InvalidRequest, ServiceUnavailable
from gateway.web.state import HUB, auth_of

routes = web.RouteTableDef()
_MAX = 2**62


def _int(request: web.Request, name: str) -> int:
    value = request.query.get(name, "")
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) >= _MAX:
        raise InvalidRequest(
            f"Query parameter {name} must be a non-negative integer.",
            errors=[{"loc": ["query", name], "msg": "not a non-negative integer"}],
        )
    return int(value)


@routes.get("/api/v1/ledger/checkpoint")
async def checkpoint(request: web.Request) -> web.Response:
    head = request.app[HUB].ledger.head
    if head is None:
        raise ServiceUnavailable("No checkpoint has been signed yet.")
    return web.Response(
        text=head.note,
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


@routes.get("/api/v1/ledger/proofs/inclusion")
async def inclusion(request: web.Request) -> web.Response:
    ledger = request.app[HUB].ledger
    return web.json_response(await ledger.inclusion(_int(request, "index"), _int(request, "size")))


@routes.get("/api/v1/ledger/proofs/consistency")
async def consistency(request: web.Request) -> web.Response:
    ledger = request.app[HUB].ledger
    return web.json_response(
        await ledger.consistency(_int(request, "first"), _int(request, "second"))
    )


@routes.get("/api/v1/ledger/entries/{index}")
async def entry(request: web.Request) -> web.Response:
    auth = auth_of(request)
    raw = request.match_info["index"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) >= _MAX:
        raise InvalidRequest(
            "Bad index.", errors=[{"loc": ["path", "index"], "msg": "not an index"}]
        )
    return web.json_response(await request.app[HUB].ledger.entry(int(raw), auth.org))
