"""Keeps the national index in step with this hub's cases (PROTOCOL §7).

The outbox (`index_outbox`, written in the same job as the case that changes it)
says for every pid of this hub what the index must hold: open (with `since_ms`),
or closed. This task pushes every pending state, concurrently and with exponential
backoff per pid when the index fails; marks open pids due again when their lease
needs renewing (`renew_interval_s` after the last confirmation, at least daily);
and forgets closed pids once the lease they were last given has run out.

Leases: an open pid gets `lease_days` from now at every push. A closed pid keeps
the lease it had, but never beyond the hub's own retention of the case's pids
(`retention.case_data_days` after closure): the index never knows a person in a
case longer than the hub does. A closed pid whose lease would end now is deleted
at the index instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from dataclasses import dataclass
from typing import Protocol

from gateway.clock import Clock
from gateway.errors import RateLimited, ServiceUnavailable
from gateway.metrics import Metrics
from gateway.models import CaseStatus, IndexRegistration
from gateway.storage import national_store
from gateway.storage.database import Database, Tx
from gateway.storage.national_store import OutboxRow

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0
DAY_MS = 86_400_000


class IndexWritePort(Protocol):
    async def register(self, pid: str, registration: IndexRegistration) -> IndexRegistration: ...

    async def delete(self, pid: str) -> None: ...


def backoff_ms(attempts: int, rng: random.Random) -> int:
    """2, 4, 8, ... seconds up to 5 minutes, with jitter so hubs do not retry in step."""
    base = min(MAX_BACKOFF_S, 2.0 ** max(1, attempts))
    return int(base * (0.5 + rng.random() / 2) * 1000)


class IndexSync:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        metrics: Metrics,
        index: IndexWritePort,
        *,
        hub_org: str,
        lease_days: float,
        renew_interval_s: float,
        retention_days: float,
        batch: int = 64,
        concurrency: int = 16,
        poll_s: float = 1.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._index = index
        self._hub = hub_org
        self._lease_ms = int(lease_days * DAY_MS)
        self._renew_ms = int(renew_interval_s * 1000)
        self._retention_ms = int(retention_days * DAY_MS)
        self._batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        self._poll_s = min(poll_s, renew_interval_s)
        self._wake = asyncio.Event()
        self._failing = False
        self._next_renewal = 0.0
        self._rng = random.Random()  # noqa: S311 - retry jitter, not a secret

    def wake(self) -> None:
        """Called after a commit that changed the outbox: push without waiting for the poll."""
        self._wake.set()

    async def start(self) -> int:
        """Queue what the cases say and the outbox does not (e.g. cases registered while
        the hub had no [national] section); returns the rows changed."""
        now = self._clock.now_ms()
        return await self._db.write(
            "index_outbox_reconcile", lambda tx: national_store.outbox_reconcile(tx, now)
        )

    async def run(self) -> None:
        while True:
            try:
                await self.sync_once()
            except Exception:
                log.exception("index sync failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
            self._wake.clear()

    async def sync_once(self) -> int:
        """Mark renewals, push what is due (until nothing is), prune; returns pushes."""
        now = self._clock.now_ms()
        if self._clock.monotonic() >= self._next_renewal:
            # Often enough that a lease is renewed within renew_interval_s of falling due.
            self._next_renewal = self._clock.monotonic() + min(60.0, self._renew_ms / 2000)
            await self._db.write(
                "index_outbox_renew",
                functools.partial(
                    _mark_and_prune,
                    now_ms=now,
                    renew_before_ms=now + self._lease_ms - self._renew_ms,
                ),
            )
        pushed = 0
        while True:
            now = self._clock.now_ms()
            # While the index is failing, one pid at a time probes it: no flood of
            # doomed calls (and log lines) when it comes back, or while it is away.
            limit = 1 if self._failing else self._batch
            due = await self._db.read(
                "index_outbox_due",
                functools.partial(national_store.outbox_due, now_ms=now, limit=limit),
            )
            if not due:
                break
            results = await asyncio.gather(*(self._push(row, now) for row in due))
            await self._db.write("index_outbox_done", functools.partial(_settle, results=results))
            ok = sum(1 for r in results if r.retry_at_ms is None)
            pushed += ok
            self._failing = ok == 0
            if ok < len(due):  # the index is failing: leave the rest to the backoff
                break
        pending = await self._db.read("index_outbox_pending", national_store.outbox_pending)
        self._metrics.index_outbox.set(pending)
        return pushed

    async def _push(self, row: OutboxRow, now: int) -> _Pushed:
        async with self._slots:
            try:
                if row.status == "open":
                    lease = now + self._lease_ms
                else:
                    closed = row.closed_ms if row.closed_ms is not None else now
                    given = row.lease_until_ms
                    lease = min(
                        now + self._lease_ms if given is None else given,
                        closed + self._retention_ms,
                    )
                    if lease <= now:
                        await self._index.delete(row.pid)
                        return _Pushed(row, None, None)
                stored = await self._index.register(
                    row.pid,
                    IndexRegistration(
                        hub=self._hub,
                        status=CaseStatus(row.status),
                        since_ms=row.since_ms,
                        lease_until_ms=lease,
                    ),
                )
                return _Pushed(row, stored.lease_until_ms, None)
            except (ServiceUnavailable, RateLimited):
                return _Pushed(row, None, now + backoff_ms(row.attempts + 1, self._rng))


@dataclass(frozen=True, slots=True)
class _Pushed:
    row: OutboxRow
    lease_until_ms: int | None  # what the index confirmed; None: deleted there
    retry_at_ms: int | None  # None: the push succeeded


def _mark_and_prune(tx: Tx, *, now_ms: int, renew_before_ms: int) -> None:
    national_store.outbox_mark_renewals(tx, renew_before_ms)
    national_store.outbox_prune(tx, now_ms)


def _settle(tx: Tx, *, results: list[_Pushed]) -> None:
    for result in results:
        if result.retry_at_ms is None:
            national_store.outbox_pushed(tx, result.row, result.lease_until_ms)
        else:
            national_store.outbox_failed(tx, result.row.pid, result.retry_at_ms)
