"""The hub's composition root and server lifecycle.

`build_hub` wires real stores, services and the clock into one `Hub`; the aiohttp
application owns its lifecycle through a cleanup context (open the database, load
the directory and the replay cache, start the background tasks; on shutdown stop
them, wake long-polls and close the database). `HubServer` runs the API and the
metrics listener and stops gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.clock import Clock, SystemClock
from gateway.config import Settings
from gateway.crypto.keys import OrgKeys
from gateway.metrics import Metrics
from gateway.policy.rules import load_policy
from gateway.services import ops, retention
from gateway.services.blobs import BlobService, BlobTotals
from gateway.services.cases import CaseService
from gateway.services.exchange import ExchangeService
from gateway.services.inbox import InboxService, Waiters
from gateway.services.membership import MembershipService
from gateway.services.messages import MessageService
from gateway.services.notifications import Notifier
from gateway.services.review import ReviewService
from gateway.services.review_auth import ReviewAuth, Sessions
from gateway.storage import policy_store, stores
from gateway.storage.blob_files import BlobFiles
from gateway.storage.database import Tx
from gateway.storage.records import OrgRecord
from gateway.web import middleware
from gateway.web.core import Listeners, build_core
from gateway.web.hub_routes import routes
from gateway.web.ledger_routes import routes as ledger_routes
from gateway.web.message_routes import routes as message_routes
from gateway.web.national_link import build_national
from gateway.web.national_routes import routes as national_routes
from gateway.web.policy_routes import routes as policy_routes
from gateway.web.review_routes import routes as review_routes
from gateway.web.state import HUB, NODE, Hub, NodeParts

log = logging.getLogger(__name__)


def build_hub(
    settings: Settings, *, clock: Clock | None = None, metrics: Metrics | None = None
) -> Hub:
    clock = clock or SystemClock()
    metrics = metrics or Metrics("hub")
    core = build_core(settings, clock, metrics)
    keys, db, directory, ledger = core.keys, core.db, core.directory, core.ledger
    policy = load_policy(settings.node.policy_file)
    waiters = Waiters()
    national, link = build_national(
        settings,
        keys=keys,
        clock=clock,
        metrics=metrics,
        db=db,
        directory=directory,
        themes=policy.themes,
    )
    notifier = Notifier(
        keys.org, waiters.notify, count=lambda event: metrics.notifications.labels(event).inc()
    )
    exchanges = ExchangeService(
        db, directory, clock, policy, waiters.notify, verifier=core.verifier
    )
    exchanges.notifier = notifier

    def totals(found: BlobTotals) -> None:
        metrics.blobs_stored.set(found.count)
        metrics.blob_bytes_stored.set(found.bytes)
        oldest = found.oldest_unfetched_ms
        metrics.blob_oldest_unfetched.set(0 if oldest is None else oldest / 1000)

    metrics.blob_budget.set(settings.messages.blob_store_budget_bytes)

    blobs = BlobService(
        db, BlobFiles.next_to(settings.node.database), clock, settings.messages, on_totals=totals
    )
    return Hub(
        settings=settings,
        clock=clock,
        metrics=metrics,
        keys=keys,
        db=db,
        directory=directory,
        replay=core.replay,
        verifier=core.verifier,
        authenticator=core.authenticator,
        waiters=waiters,
        cases=CaseService(
            db,
            directory,
            clock,
            policy.themes,
            index_outbox=None if link is None else link.sync.wake,
            notifier=notifier,
        ),
        exchanges=exchanges,
        inbox=InboxService(
            db,
            clock,
            waiters,
            visibility_s=settings.hub.inbox_visibility_timeout_s,
            max_wait_s=settings.hub.inbox_max_wait_s,
            on_ack=blobs.on_ack,
        ),
        membership=MembershipService(db, directory, clock, settings.node.org),
        policy=policy,
        ledger=ledger,
        national=national,
        review=ReviewService(
            db,
            ledger,
            clock,
            hub_org=keys.org,
            signing_key=keys.signing_key,
            retention=settings.retention,
        ),
        review_auth=ReviewAuth(db, clock, Sessions(clock), keys.org),
        messages=MessageService(
            db, directory, clock, policy, waiters.notify, verifier=core.verifier
        ),
        blobs=blobs,
        notifier=notifier,
        national_link=link,
    )


def hub_record(keys: OrgKeys, now_ms: int) -> OrgRecord:
    return OrgRecord(
        org=keys.org,
        role="hub",
        domain=None,
        name=keys.org,
        signing_key=keys.signing_key,
        signing_kid=keys.signing_kid,
        encryption_key=keys.encryption_key,
        encryption_kid=keys.encryption_kid,
        status="active",
        valid_until_ms=None,
        created_ms=now_ms,
        revoked_ms=None,
    )


def _prune(tx: Tx, *, now_ms: int, acked_before_ms: int) -> int:
    return stores.prune(tx, now_ms, acked_before_ms)


def _wat_backlog(tx: Tx, *, now_ms: int) -> tuple[int, int]:
    return policy_store.wat_backlog(tx, now_ms)


async def _loop_lag(hub: Hub, interval_s: float = 0.05) -> None:
    """Event-loop lag: how late a timer fires. Every request waits that long too."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval_s)
        hub.metrics.loop_lag.observe(max(0.0, loop.time() - start - interval_s))


async def _maintenance(hub: Hub) -> None:
    """Prune expired nonces and old acknowledged messages; publish the gauges."""
    while True:
        await asyncio.sleep(10)
        now = hub.clock.now_ms()
        try:
            hub.replay.prune(now)
            prune = functools.partial(_prune, now_ms=now, acked_before_ms=now - 86_400_000)
            while await hub.db.write("prune", prune, bulk=True) == stores.PRUNE_CHUNK:
                pass  # in chunks, so that no request waits behind one long DELETE
            await _publish_gauges(hub)
        except Exception:
            log.exception("maintenance failed")


async def _publish_gauges(hub: Hub) -> None:
    """Backlogs, the checkpoint's age and the expiry dates (at start, then every 10 s)."""
    now = hub.clock.now_ms()
    m = hub.metrics
    pending, overdue = await hub.db.read("wat_backlog", functools.partial(_wat_backlog, now_ms=now))
    m.wat_pending.set(pending)
    m.wat_overdue.set(overdue)
    head = hub.ledger.head
    if head is not None:
        m.checkpoint_time.set(head.time_ms / 1000)
        m.checkpoint_size.set(head.size)
    backlog = await hub.db.read("inbox_backlog", stores.inbox_backlog)
    known = set(hub.directory.orgs)
    for org in known:
        count, oldest = backlog.get(org, (0, now))
        m.inbox_backlog.labels(org).set(count)
        m.inbox_oldest_age.labels(org).set(max(0, now - oldest) / 1000)
    found = await hub.db.read(
        "expiries",
        functools.partial(ops.expiries, now_ms=now, orgs=tuple(hub.directory.orgs.values())),
    )
    m.set_family(m.key_expiry, found.keys)
    m.set_family(m.accession_expiry, found.accessions)
    m.set_family(m.protocol_expiry, found.protocols)


SELF_CHECK_INTERVAL_S = 600.0


async def _self_check(hub: Hub, interval_s: float = SELF_CHECK_INTERVAL_S) -> None:
    """The light ledger self-check (services/ops.py): at start, then every interval_s."""
    previous = None
    while True:
        try:
            result = await ops.check_ledger(hub.ledger, hub.db, hub.keys.signing_key, previous)
        except Exception:
            log.exception("ledger self-check failed to run")
            result = ops.SelfCheck(False, 0, None, "the check itself failed")
        hub.metrics.ledger_self_check.set(1 if result.ok else 0)
        hub.metrics.ledger_self_check_time.set(hub.clock.now_ms() / 1000)
        if result.ok:
            previous = result.head
            log.debug("ledger self-check passed", extra={"size": result.size})
        else:
            log.error(
                "ledger self-check FAILED", extra={"size": result.size, "problem": result.problem}
            )
        await asyncio.sleep(interval_s)


async def _purger(hub: Hub) -> None:
    """Scheduled retention purge (also available as `zvh-gateway ledger purge`)."""
    settings = hub.settings.retention
    while True:
        await asyncio.sleep(settings.purge_interval_s)
        try:
            await purge_now(hub)
        except Exception:
            log.exception("scheduled purge failed")


async def purge_now(hub: Hub) -> retention.PurgePlan:
    now = hub.clock.now_ms()
    done = await hub.db.write(
        "purge",
        functools.partial(
            retention.execute, settings=hub.settings.retention, now_ms=now, actor=hub.keys.org
        ),
    )
    hub.blobs.delete_files(done.blobs)
    if done.entries or done.cases:
        await hub.db.truncate_wal()
        log.info("purged", extra={"entries": len(done.entries), "cases": len(done.cases)})
    return done


async def _message_tasks(hub: Hub) -> None:
    """The blob sweep (unreferenced and expired attachments) and the notices of
    declarations about to expire, every `messages.sweep_interval_s`."""
    settings = hub.settings.messages
    while True:
        try:
            await hub.blobs.sweep()
            await hub.notifier.declarations_expiring(
                hub.db, now_ms=hub.clock.now_ms(), window_days=settings.declaration_notice_days
            )
        except Exception:
            log.exception("message maintenance failed")
        await asyncio.sleep(settings.sweep_interval_s)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    await hub.db.open()
    hub.blobs.files.open()
    now = hub.clock.now_ms()

    def ensure_self(tx: Tx) -> None:
        current = {o.org: o for o in stores.list_orgs(tx)}.get(hub.keys.org)
        if (
            current is None
            or current.signing_key != hub.keys.signing_key
            or current.encryption_key != hub.keys.encryption_key
        ):
            stores.upsert_org(tx, hub_record(hub.keys, now))

    await hub.db.write("hub_self", ensure_self)
    await hub.directory.reload(force=True)
    nonces = await hub.db.read("nonces_load", lambda tx: stores.active_nonces(tx, now))
    hub.replay.load(nonces)
    hub.db.add_ledger_listener(lambda refs: hub.metrics.ledger_size.set(refs[-1].index + 1))
    hub.db.add_ledger_listener(lambda refs: hub.ledger.notify_appended())
    hub.metrics.ledger_size.set(hub.db.ledger.size)
    await hub.ledger.start()
    try:
        await _publish_gauges(hub)
    except Exception:
        log.exception("publishing the gauges failed")
    tasks = [
        asyncio.create_task(hub.ledger.run(), name="checkpoints"),
        asyncio.create_task(hub.directory.run_refresher(), name="directory-refresh"),
        asyncio.create_task(_maintenance(hub), name="maintenance"),
        asyncio.create_task(_loop_lag(hub), name="loop-lag"),
        asyncio.create_task(_purger(hub), name="purge"),
        asyncio.create_task(_self_check(hub), name="ledger-self-check"),
        asyncio.create_task(hub.review.run_indexer(), name="review-index"),
        asyncio.create_task(_message_tasks(hub), name="messages"),
    ]
    if hub.national_link is not None:
        tasks += await hub.national_link.start()
    await hub.verifier.start()
    hub.ready = True
    log.info("hub ready", extra={"org": hub.keys.org, "ledger_size": hub.db.ledger.size})
    try:
        yield
    finally:
        hub.ready = False
        hub.waiters.wake_all()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if hub.national_link is not None:
            await hub.national_link.close()
        await hub.ledger.stop()
        try:
            # Cover every acknowledged entry by a signed checkpoint before we go.
            await hub.ledger.sign()
        except Exception:
            log.exception("final checkpoint failed")
        await hub.db.close()
        await hub.verifier.stop()
        log.info("hub stopped", extra={"org": hub.keys.org})


async def _draining(app: web.Application) -> None:
    """The listener is closed and requests in flight are finishing: /readyz says 503,
    and waiting long-polls answer at once."""
    app[HUB].ready = False
    app[middleware.DRAINING].set()
    log.info("hub stopping", extra={"org": app[HUB].keys.org})


def make_app(hub: Hub) -> web.Application:
    app = web.Application(
        client_max_size=hub.settings.http.max_body_bytes,
        # access_log and metrics outermost, so they see the status of every rendered
        # problem too; access_log first, so every line of a request has its id.
        middlewares=[
            middleware.access_log,
            middleware.metrics,
            middleware.problems,
            middleware.authenticate,
            middleware.long_polls,
        ],
    )
    app[HUB] = hub
    app[NODE] = NodeParts(hub.metrics, hub.authenticator, hub.db)
    app[middleware.DRAINING] = asyncio.Event()
    app.on_shutdown.append(_draining)
    app.add_routes(routes)
    app.add_routes(ledger_routes)
    app.add_routes(message_routes)
    app.add_routes(policy_routes)
    app.add_routes(national_routes)
    app.add_routes(review_routes)
    app.cleanup_ctx.append(_lifecycle)
    return app


class HubServer:
    """Runs one hub on its API port (and its metrics port) until stopped."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._listeners = Listeners()

    async def start(self) -> None:
        hub = self.hub
        await self._listeners.start(
            make_app(hub), hub.settings.http, hub.metrics, lambda: hub.ready
        )

    async def stop(self) -> None:
        await self._listeners.stop()
