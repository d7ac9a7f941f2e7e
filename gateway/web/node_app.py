"""What the national pseudonymiser and index share: composition, lifecycle, server.

Both authenticate their callers exactly like a hub does (PROTOCOL §2: the same
middleware, `Authenticator`, replay cache that survives restarts) against their own
trust list of hubs: the `organisations` table with role `hub`, managed with
`zvh-gateway partner add --role hub`. Both keep an append-only ledger of what they
did, with signed checkpoints (`GET /api/v1/ledger/checkpoint`, public) in the same
format as a hub's. The role-specific parts are in `pseudonymiser_app` and
`index_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.clock import Clock, SystemClock
from gateway.config import Settings
from gateway.crypto.keys import OrgKeys
from gateway.crypto.verifier import Verifier
from gateway.errors import ServiceUnavailable
from gateway.metrics import Metrics
from gateway.services.auth import Authenticator, ReplayCache
from gateway.services.directory import Directory
from gateway.services.ledger import LedgerService
from gateway.storage import stores
from gateway.storage.database import Database
from gateway.web import middleware
from gateway.web.core import Listeners, build_core
from gateway.web.state import NODE, NodeParts

log = logging.getLogger(__name__)

TaskStarter = Callable[[], Awaitable[list[asyncio.Task[None]]]]


@dataclass(slots=True)
class NationalNode:
    settings: Settings
    clock: Clock
    metrics: Metrics
    keys: OrgKeys
    db: Database
    directory: Directory
    replay: ReplayCache
    verifier: Verifier
    authenticator: Authenticator
    ledger: LedgerService
    ready: bool = False

    @property
    def role(self) -> str:
        return self.settings.node.role


NATIONAL = web.AppKey("national", NationalNode)


def build_node(
    settings: Settings, *, clock: Clock | None = None, metrics: Metrics | None = None
) -> NationalNode:
    clock = clock or SystemClock()
    metrics = metrics or Metrics(settings.node.role)
    core = build_core(settings, clock, metrics)
    return NationalNode(
        settings=settings,
        clock=clock,
        metrics=metrics,
        keys=core.keys,
        db=core.db,
        directory=core.directory,
        replay=core.replay,
        verifier=core.verifier,
        authenticator=core.authenticator,
        ledger=core.ledger,
    )


async def _maintenance(node: NationalNode) -> None:
    while True:
        await asyncio.sleep(10)
        now = node.clock.now_ms()
        try:
            node.replay.prune(now)
            prune = functools.partial(stores.prune, now_ms=now, acked_before_ms=now)
            while await node.db.write("prune", prune, bulk=True) == stores.PRUNE_CHUNK:
                pass
        except Exception:
            log.exception("maintenance failed")


@contextlib.asynccontextmanager
async def running(node: NationalNode, start_role: TaskStarter) -> AsyncIterator[None]:
    """Open the database, load the trust list and the replay cache, start the tasks;
    on the way out stop them, sign a last checkpoint and close the database."""
    await node.db.open()
    try:
        await node.directory.reload(force=True)
        now = node.clock.now_ms()
        node.replay.load(
            await node.db.read("nonces_load", lambda tx: stores.active_nonces(tx, now))
        )
        node.db.add_ledger_listener(lambda refs: node.metrics.ledger_size.set(refs[-1].index + 1))
        node.db.add_ledger_listener(lambda refs: node.ledger.notify_appended())
        node.metrics.ledger_size.set(node.db.ledger.size)
        await node.ledger.start()
        tasks = [
            asyncio.create_task(node.ledger.run(), name="checkpoints"),
            asyncio.create_task(node.directory.run_refresher(), name="directory-refresh"),
            asyncio.create_task(_maintenance(node), name="maintenance"),
            *await start_role(),
        ]
        hubs = sum(1 for o in node.directory.orgs.values() if o.role == "hub")
        if hubs == 0:
            log.warning("the trust list is empty: every request will get 401")
        await node.verifier.start()
        node.ready = True
        log.info(f"{node.role} ready", extra={"org": node.keys.org, "trusted_hubs": hubs})
        try:
            yield
        finally:
            node.ready = False
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await node.ledger.stop()
            try:
                await node.ledger.sign()
            except Exception:
                log.exception("final checkpoint failed")
    finally:
        await node.db.close()
        await node.verifier.stop()
        log.info(f"{node.role} stopped", extra={"org": node.keys.org})


routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    ready = request.app[NATIONAL].ready
    return web.json_response({"ready": ready}, status=200 if ready else 503)


@routes.get("/api/v1/ledger/checkpoint")
async def checkpoint(request: web.Request) -> web.Response:
    head = request.app[NATIONAL].ledger.head
    if head is None:
        raise ServiceUnavailable("No checkpoint has been signed yet.")
    return web.Response(
        text=head.note,
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


def make_node_app(node: NationalNode, role_routes: web.RouteTableDef) -> web.Application:
    app = web.Application(
        client_max_size=node.settings.http.max_body_bytes,
        middlewares=[
            middleware.access_log,
            middleware.metrics,
            middleware.problems,
            middleware.authenticate,
        ],
    )
    app[NATIONAL] = node
    app[NODE] = NodeParts(node.metrics, node.authenticator, node.db)

    async def draining(app: web.Application) -> None:
        node.ready = False
        log.info(f"{node.role} stopping", extra={"org": node.keys.org})

    app.on_shutdown.append(draining)
    app.add_routes(routes)
    app.add_routes(role_routes)
    return app


class NodeServer:
    """Runs a national node's API (and its metrics listener) until stopped."""

    def __init__(self, node: NationalNode, app: web.Application) -> None:
        self.node = node
        self._app = app
        self._listeners = Listeners()

    async def start(self) -> None:
        node = self.node
        await self._listeners.start(self._app, node.settings.http, node.metrics, lambda: node.ready)

    async def stop(self) -> None:
        await self._listeners.stop()
