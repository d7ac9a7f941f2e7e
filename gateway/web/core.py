"""The parts every node builds the same way (hub, pseudonymiser, index): its keys,
database, directory, request authentication and ledger. One builder, so the roles
cannot drift apart in how they check signatures or sign checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.clock import Clock
from gateway.config import HttpSettings, Settings
from gateway.crypto.keys import OrgKeys
from gateway.crypto.verifier import ProcessVerifier, Verifier
from gateway.errors import ConfigError
from gateway.metrics import CONTENT_TYPE, Metrics
from gateway.services.auth import Authenticator, ReplayCache
from gateway.services.directory import Directory
from gateway.services.ledger import LedgerService
from gateway.storage.database import Database


@dataclass(frozen=True, slots=True)
class NodeCore:
    keys: OrgKeys
    db: Database
    directory: Directory
    replay: ReplayCache
    verifier: Verifier
    authenticator: Authenticator
    ledger: LedgerService


def build_core(settings: Settings, clock: Clock, metrics: Metrics) -> NodeCore:
    keys = OrgKeys.load(settings.node.key_file)
    if keys.org != settings.node.org:
        raise ConfigError(
            f"key file {settings.node.key_file} is for {keys.org!r}, not {settings.node.org!r}"
        )
    hub = settings.hub
    db = Database(settings.node.database, batch_max=hub.write_batch_max, observer=metrics)
    directory = Directory(db, clock, refresh_s=hub.directory_refresh_s)
    replay = ReplayCache()
    verifier = ProcessVerifier() if hub.signature_verifier == "process" else Verifier()
    metrics.signature_verifier_up.set_function(lambda: 1.0 if verifier.running else 0.0)
    return NodeCore(
        keys=keys,
        db=db,
        directory=directory,
        replay=replay,
        verifier=verifier,
        authenticator=Authenticator(
            directory,
            replay,
            clock,
            authority=settings.authority,
            skew_s=hub.clock_skew_s,
            window_s=hub.nonce_window_s,
            verifier=verifier,
        ),
        ledger=LedgerService(
            db, keys, clock, interval_s=hub.checkpoint_interval_s, idle_s=hub.checkpoint_idle_s
        ),
    )


def metrics_app(metrics: Metrics, ready: Callable[[], bool]) -> web.Application:
    """The separate, unauthenticated listener: /metrics, /healthz, /readyz."""

    async def render(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        return web.json_response({"ready": ready()}, status=200 if ready() else 503)

    app = web.Application()
    app.router.add_get("/metrics", render)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class Listeners:
    """A node's API listener and, when configured, its metrics listener. `stop` closes
    them in that order, so a scrape can still see the shutdown."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []

    async def start(
        self, app: web.Application, http: HttpSettings, metrics: Metrics, ready: Callable[[], bool]
    ) -> None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=http.shutdown_timeout_s)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, http.host, http.port).start()
        if http.metrics_port is not None:
            mrunner = web.AppRunner(metrics_app(metrics, ready), access_log=None)
            await mrunner.setup()
            self._runners.append(mrunner)
            await web.TCPSite(mrunner, http.metrics_host, http.metrics_port).start()

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
