"""The national index's application (role = "index", PROTOCOL §7).

`PUT` / `DELETE /api/v1/index/registrations/{pid}` and `POST /api/v1/index/lookups`
for the hubs of its trust list; everything else a national node has comes from
`node_app`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from gateway.clock import Clock
from gateway.config import IndexSettings, Settings
from gateway.federation.index import IndexService
from gateway.metrics import Metrics
from gateway.models import IndexDeleteIn, IndexLookupIn, IndexRegistration
from gateway.web.hub_routes import parse
from gateway.web.node_app import NationalNode, NodeServer, build_node, make_node_app, running
from gateway.web.state import BODY, auth_of


@dataclass(slots=True)
class Index:
    node: NationalNode
    service: IndexService


INDEX = web.AppKey("index", Index)
routes = web.RouteTableDef()
REGISTRATION = "/api/v1/index/registrations/{pid}"
LOOKUPS = "/api/v1/index/lookups"


@routes.put(REGISTRATION)
async def register(request: web.Request) -> web.Response:
    req, _ = parse(request, IndexRegistration)
    auth = auth_of(request)
    service = request.app[INDEX].service
    return web.json_response(
        await service.register(auth.org, auth.persist, request.match_info["pid"], req, REGISTRATION)
    )


@routes.delete(REGISTRATION)
async def delete(request: web.Request) -> web.Response:
    auth = auth_of(request)
    # The hub is the caller; a body, when sent, may name it (and nobody else).
    claimed = parse(request, IndexDeleteIn)[0].hub if request[BODY] else None
    service = request.app[INDEX].service
    return web.json_response(
        await service.delete(
            auth.org, auth.persist, request.match_info["pid"], REGISTRATION, claimed_hub=claimed
        )
    )


@routes.post(LOOKUPS)
async def lookup(request: web.Request) -> web.Response:
    req, _ = parse(request, IndexLookupIn)
    auth = auth_of(request)
    service = request.app[INDEX].service
    return web.json_response(await service.lookup(auth.org, auth.persist, req.pid, LOOKUPS))


def build_index(
    settings: Settings, *, clock: Clock | None = None, metrics: Metrics | None = None
) -> Index:
    node = build_node(settings, clock=clock, metrics=metrics)
    index = settings.index or IndexSettings()
    service = IndexService(
        node.db,
        node.clock,
        node.metrics,
        max_lease_days=index.max_lease_days,
        rate_per_minute=index.rate_limit_per_minute,
        prune_period_s=index.prune_period_s,
    )
    return Index(node, service)


def make_index_app(ix: Index) -> web.Application:
    app = make_node_app(ix.node, routes)
    app[INDEX] = ix

    async def start_role() -> list[asyncio.Task[None]]:
        return [asyncio.create_task(ix.service.run_pruner(), name="index-prune")]

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with running(ix.node, start_role):
            yield

    app.cleanup_ctx.append(lifecycle)
    return app


def index_server(ix: Index) -> NodeServer:
    return NodeServer(ix.node, make_index_app(ix))
