"""The national pseudonymiser's application (role = "pseudonymiser", PROTOCOL §6).

`POST /api/v1/oprf/evaluate` for the hubs of its trust list; everything else a
national node has (authentication, ledger, probes) comes from `node_app`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from gateway.clock import Clock
from gateway.config import Settings
from gateway.crypto.oprf_key import OprfKey
from gateway.errors import ConfigError
from gateway.federation.pseudonymiser import PseudonymiserService
from gateway.metrics import Metrics
from gateway.models import EvaluateIn
from gateway.web.hub_routes import parse
from gateway.web.node_app import NationalNode, NodeServer, build_node, make_node_app, running
from gateway.web.state import auth_of


@dataclass(slots=True)
class Pseudonymiser:
    node: NationalNode
    service: PseudonymiserService


PSEUDONYMISER = web.AppKey("pseudonymiser", Pseudonymiser)
routes = web.RouteTableDef()


@routes.post("/api/v1/oprf/evaluate")
async def evaluate(request: web.Request) -> web.Response:
    req, _ = parse(request, EvaluateIn)
    service = request.app[PSEUDONYMISER].service
    return web.json_response(await service.evaluate(auth_of(request).caller, req))


def build_pseudonymiser(
    settings: Settings, *, clock: Clock | None = None, metrics: Metrics | None = None
) -> Pseudonymiser:
    if settings.pseudonymiser is None:
        raise ConfigError("role 'pseudonymiser' needs a [pseudonymiser] section")
    node = build_node(settings, clock=clock, metrics=metrics)
    key = OprfKey.load(settings.pseudonymiser.oprf_key_file)
    service = PseudonymiserService(
        key,
        node.db,
        node.clock,
        node.metrics,
        rate_per_minute=settings.pseudonymiser.rate_limit_per_minute,
        max_batch=settings.pseudonymiser.max_batch,
    )
    return Pseudonymiser(node, service)


def make_pseudonymiser_app(p: Pseudonymiser) -> web.Application:
    app = make_node_app(p.node, routes)
    app[PSEUDONYMISER] = p

    async def start_role() -> list[asyncio.Task[None]]:
        await p.service.record_key()
        return [asyncio.create_task(p.service.run_flusher(), name="oprf-usage")]

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with running(p.node, start_role):
            try:
                yield
            finally:
                await p.service.flush_usage()

    app.cleanup_ctx.append(lifecycle)
    return app


def pseudonymiser_server(p: Pseudonymiser) -> NodeServer:
    return NodeServer(p.node, make_pseudonymiser_app(p))
