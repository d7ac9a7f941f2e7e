"""The adapter's composition root: build everything from `AdapterSettings`, run the
local listener, the inbox poller, the deliverer and the file drop, and stop cleanly.

One place builds, nothing is global: tests build the same `Adapter` in process, the
CLI (`zvh-gateway adapter --config FILE`) runs it until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from gateway.adapters.adapter_app import LOCAL, LocalApi, build_local_app
from gateway.adapters.adapter_config import AdapterSettings, ensure_token
from gateway.adapters.client import HubClient
from gateway.adapters.delivery import Deliverer, FileDropSink, RetryPolicy, Sink, WebhookSink
from gateway.adapters.filedrop import FileDrop
from gateway.adapters.outbound import Outbound
from gateway.adapters.referral_form import add_form_routes
from gateway.clock import Clock, SystemClock
from gateway.crypto.keys import OrgKeys
from gateway.errors import ConfigError
from gateway.storage.adapter_store import AdapterStore

log = logging.getLogger(__name__)


@dataclass
class Adapter:
    settings: AdapterSettings
    client: HubClient
    store: AdapterStore
    outbound: Outbound
    deliverer: Deliverer
    filedrop: FileDrop | None
    app: web.Application
    session: aiohttp.ClientSession
    _runner: web.AppRunner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        await self.store.open()
        if self.filedrop is not None:
            self.filedrop.prepare()
        if self.settings.local.attachment_dir is not None:
            self.settings.local.attachment_dir.mkdir(parents=True, exist_ok=True)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.local.host, self.settings.local.port)
        await site.start()
        self._tasks = [
            asyncio.create_task(self.deliverer.run_poller(self._stop), name="adapter-poller"),
            asyncio.create_task(self.deliverer.run_deliverer(self._stop), name="adapter-deliver"),
        ]
        if self.filedrop is not None:
            self._tasks.append(
                asyncio.create_task(self.filedrop.run(self._stop), name="adapter-filedrop")
            )
        self.app[LOCAL].alive = self._alive
        log.info("adapter ready", extra={"org": self.settings.adapter.org})

    def _alive(self) -> bool:
        return not self._stop.is_set() and all(not t.done() for t in self._tasks)

    async def stop(self) -> None:
        self._stop.set()
        # The poller may sit in a long-poll. Let it end by itself when it can: a poll cut
        # off here stays open at the hub, which may still lease items to it, and those
        # would then reach the next start only after the hub's visibility timeout. What
        # the last poll brings is stored before the process exits, so nothing is lost.
        grace = self.settings.adapter.poll_wait_s + 2.0
        poller = [t for t in self._tasks if t.get_name() == "adapter-poller"]
        if poller:
            _done, pending = await asyncio.wait(poller, timeout=grace)
            for task in pending:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        await self.client.close()
        await self.session.close()
        await self.store.close()
        log.info("adapter stopped", extra={"org": self.settings.adapter.org})


def build_adapter(settings: AdapterSettings, clock: Clock | None = None) -> Adapter:
    """Everything from the settings; opens nothing yet (that is `start`)."""
    clock = clock or SystemClock()
    keys = OrgKeys.load(settings.adapter.key_file)
    if keys.org != settings.adapter.org:
        raise ConfigError(
            f"adapter.key_file: {settings.adapter.key_file} is for {keys.org!r}, "
            f"not {settings.adapter.org!r}"
        )
    token = ensure_token(settings.local.token_file)
    client = HubClient(
        settings.adapter.hub_url, keys, clock=clock, timeout_s=settings.adapter.hub_timeout_s
    )
    store = AdapterStore(settings.database)
    outbound = Outbound(client, store, clock, attachment_dir=settings.local.attachment_dir)
    session = aiohttp.ClientSession()
    filedrop = (
        FileDrop(settings.filedrop.dir, outbound, settings.filedrop.scan_interval_s)
        if settings.filedrop is not None
        else None
    )
    sink: Sink
    if settings.webhook is not None:
        hook = settings.webhook
        hook_token = (
            ensure_token(hook.token_file, "webhook.token_file")
            if hook.token_file is not None
            else None
        )
        sink = WebhookSink(hook.url, hook.timeout_s, session, token=hook_token)
    else:
        assert filedrop is not None
        sink = FileDropSink(filedrop.out_dir)
    d = settings.delivery
    deliverer = Deliverer(
        client,
        store,
        outbound,
        sink,
        RetryPolicy(d.max_attempts, d.backoff_base_s, d.backoff_max_s),
        clock,
        poll_wait_s=settings.adapter.poll_wait_s,
        received_dir=(
            settings.adapter.data_dir / "received"
            if settings.webhook is not None or filedrop is None
            else filedrop.out_dir
        ),
        keep_days=settings.adapter.keep_days,
    )
    api = LocalApi(
        outbound=outbound,
        store=store,
        deliverer=deliverer,
        token=token,
        secure_cookies=settings.local.scheme == "https",
    )
    app = build_local_app(api, max_body_bytes=settings.local.max_body_bytes)
    if settings.form.enabled:
        add_form_routes(app, settings.form.organisation_name)
    return Adapter(settings, client, store, outbound, deliverer, filedrop, app, session)
