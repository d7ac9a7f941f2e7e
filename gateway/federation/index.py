"""The national index's service: pid -> the hubs that registered it (PROTOCOL §7).

Hubs register, renew and delete their own registrations only (`hub` must be the
authenticated caller) and look pids up. An expired lease is never returned, and
expired rows are deleted in slices of the key space (`run_pruner`), the whole table
once per `prune_period_s`. Every registration that changes something, every
deletion and every lookup is an entry of the index's own ledger, with the SHA-256
of the pid instead of the pid; a renewal that only moves the lease on is not (it
says nothing new, and there are millions of them).

Each request is one storage job: the caller's nonce, the change or the read, and
the ledger entry commit together, before the answer (write-ahead).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from gateway.clock import Clock
from gateway.crypto.encoding import sha256
from gateway.errors import DenyCode, Forbidden, InvalidRequest, RateLimited
from gateway.metrics import Metrics
from gateway.models import IndexRegistration
from gateway.policy.ratelimit import RateLimiter
from gateway.storage import national_store
from gateway.storage.database import Database, Tx
from gateway.storage.ledger_store import LedgerRef

log = logging.getLogger(__name__)

PID_RE = re.compile(r"[0-9a-f]{128}")
DAY_MS = 86_400_000
_FUTURE_SKEW_MS = 300_000
_SLICES = 256

Persist = Callable[[Tx], None]


def parse_pid(text: str) -> bytes:
    if PID_RE.fullmatch(text) is None:
        raise InvalidRequest(
            "A pid is 128 lowercase hex characters.",
            errors=[{"loc": ["path", "pid"], "msg": "not a pid"}],
        )
    return bytes.fromhex(text)


def _registration(row: national_store.RegistrationRow) -> dict[str, Any]:
    hub, status, since_ms, lease_until_ms = row
    return {"hub": hub, "status": status, "since_ms": since_ms, "lease_until_ms": lease_until_ms}


class IndexService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        metrics: Metrics,
        *,
        max_lease_days: float,
        rate_per_minute: int,
        prune_period_s: float,
    ) -> None:
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._max_lease_ms = int(max_lease_days * DAY_MS)
        self._limit = RateLimiter(rate_per_minute)
        self._prune_period_s = prune_period_s

    def _admit(self, org: str, route: str) -> None:
        wait = self._limit.take(org, self._clock.monotonic())
        if wait:
            self._metrics.rate_limited.labels(route, org).inc()
            raise RateLimited(wait, f"Over this hub's limit; retry after {wait} s.")

    async def register(
        self, org: str, persist: Persist, pid_text: str, req: IndexRegistration, route: str
    ) -> dict[str, Any]:
        pid = parse_pid(pid_text)
        self._admit(org, route)
        now = self._clock.now_ms()
        if req.lease_until_ms <= now:
            raise InvalidRequest(
                "The lease must end in the future.",
                errors=[{"loc": ["lease_until_ms"], "msg": "not in the future"}],
            )
        if req.since_ms > now + _FUTURE_SKEW_MS:
            raise InvalidRequest(
                "since_ms is in the future.", errors=[{"loc": ["since_ms"], "msg": "in the future"}]
            )
        # A hub cannot keep a person in the index forever with one far-off lease.
        lease = min(req.lease_until_ms, now + self._max_lease_ms)
        stored = {
            "hub": req.hub,
            "status": req.status.value,
            "since_ms": req.since_ms,
            "lease_until_ms": lease,
        }

        def job(tx: Tx) -> dict[str, Any] | LedgerRef:
            persist(tx)
            if req.hub != org:
                return _deny(tx, org, "index-register", now)
            before = national_store.index_lookup(tx, pid, now)
            previous = next((r for r in before if r[0] == org), None)
            national_store.index_put(
                tx,
                pid=pid,
                hub=org,
                status=req.status.value,
                since_ms=req.since_ms,
                lease_until_ms=lease,
                now_ms=now,
            )
            if previous is None or previous[1:3] != (req.status.value, req.since_ms):
                tx.append_ledger(
                    "index-registered",
                    now,
                    {
                        "hub": org,
                        "pid_sha256": sha256(pid).hex(),
                        "status": req.status.value,
                        "since_ms": req.since_ms,
                        "lease_until_ms": lease,
                    },
                    (org,),
                )
            return {"registration": stored}

        return _settle(await self._db.write("index_register", job))

    async def delete(
        self,
        org: str,
        persist: Persist,
        pid_text: str,
        route: str,
        *,
        claimed_hub: str | None = None,
    ) -> dict[str, Any]:
        pid = parse_pid(pid_text)
        self._admit(org, route)
        now = self._clock.now_ms()

        def job(tx: Tx) -> dict[str, Any] | LedgerRef:
            persist(tx)
            if claimed_hub is not None and claimed_hub != org:
                return _deny(tx, org, "index-delete", now)
            deleted = national_store.index_delete(tx, pid, org)
            if deleted:
                tx.append_ledger(
                    "index-deleted", now, {"hub": org, "pid_sha256": sha256(pid).hex()}, (org,)
                )
            return {"deleted": deleted}

        return _settle(await self._db.write("index_delete", job))

    async def lookup(self, org: str, persist: Persist, pid_text: str, route: str) -> dict[str, Any]:
        pid = bytes.fromhex(pid_text)  # validated by the wire model
        self._admit(org, route)
        now = self._clock.now_ms()

        def job(tx: Tx) -> dict[str, Any]:
            persist(tx)
            rows = national_store.index_lookup(tx, pid, now)
            tx.append_ledger(
                "index-lookup",
                now,
                {"hub": org, "pid_sha256": sha256(pid).hex(), "hubs": [r[0] for r in rows]},
                (org,),
            )
            return {"registrations": [_registration(r) for r in rows]}

        result: dict[str, Any] = await self._db.write("index_lookup", job)
        return result

    async def prune_slice(self, index: int) -> int:
        """Delete the expired registrations in 1/256 of the pid space."""
        low = bytes([index])
        high = bytes([index + 1]) if index + 1 < _SLICES else None
        now = self._clock.now_ms()

        def job(tx: Tx) -> int:
            count = national_store.index_prune_slice(tx, low, high, now)
            if count:
                tx.append_ledger("index-pruned", now, {"slice": index, "expired": count}, ())
            return count

        count: int = await self._db.write("index_prune", job)
        return count

    async def run_pruner(self) -> None:
        index = 0
        while True:
            await asyncio.sleep(self._prune_period_s / _SLICES)
            try:
                await self.prune_slice(index)
            except Exception:
                log.exception("pruning expired registrations failed")
            index = (index + 1) % _SLICES


def _deny(tx: Tx, org: str, action: str, now_ms: int) -> LedgerRef:
    return tx.append_ledger(
        "denied", now_ms, {"action": action, "code": "forbidden-role", "org": org}, (org,)
    )


def _settle(outcome: dict[str, Any] | LedgerRef) -> dict[str, Any]:
    if isinstance(outcome, LedgerRef):
        error = Forbidden(DenyCode.FORBIDDEN_ROLE, "A hub registers only for itself.")
        error.ledger = [outcome.to_json()]
        raise error
    return outcome
