"""The national pseudonymiser's service: BlindEvaluate for hubs (PROTOCOL §6).

It holds the OPRF key and sees only blinded elements, which are uniformly random
group elements: it cannot learn a BSN, a birth date or a pid from them. Callers
are hubs of its trust list (the web layer has authenticated them); each has a token
bucket over blinded elements, and its evaluations are counted (metrics, and per
UTC day in `oprf_usage`, flushed every few seconds). A change of the key in use is
a ledger entry, so a canary alarm at a hub can be matched with the key's history.

Must not log or store blinded or evaluated elements.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from typing import Any

from gateway.clock import Clock
from gateway.crypto.encoding import b64u_decode, b64u_encode
from gateway.crypto.oprf_key import OprfKey
from gateway.errors import CryptoError, DenyCode, Forbidden, InvalidRequest, RateLimited
from gateway.metrics import Metrics
from gateway.models import EvaluateIn
from gateway.policy.ratelimit import RateLimiter
from gateway.storage import national_store
from gateway.storage.database import Database, Tx
from gateway.storage.records import OrgRecord

log = logging.getLogger(__name__)
ROUTE = "/api/v1/oprf/evaluate"
# Batches larger than this are evaluated on a worker thread (libsodium releases the
# GIL), so one hub's big batch does not stall the event loop for the others.
_INLINE_MAX = 8


class PseudonymiserService:
    def __init__(
        self,
        key: OprfKey,
        db: Database,
        clock: Clock,
        metrics: Metrics,
        *,
        rate_per_minute: int,
        max_batch: int,
    ) -> None:
        self._key = key
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._limit = RateLimiter(rate_per_minute)
        self._max_batch = max_batch
        self._usage: collections.Counter[tuple[str, str]] = collections.Counter()

    @property
    def key_id(self) -> str:
        return self._key.key_id

    async def record_key(self) -> None:
        """At start: a ledger entry when the key differs from the one used before."""
        now = self._clock.now_ms()
        key_id = self._key.key_id

        def job(tx: Tx) -> None:
            previous = national_store.meta_get(tx, "oprf_key_id")
            if previous == key_id:
                return
            national_store.meta_set(tx, "oprf_key_id", key_id)
            tx.append_ledger(
                "oprf-key-in-use", now, {"key_id": key_id, "previous_key_id": previous}, ()
            )
            if previous is not None:
                log.warning("the OPRF key changed", extra={"key_id": key_id, "previous": previous})

        await self._db.write("oprf_key", job)

    async def evaluate(self, caller: OrgRecord, req: EvaluateIn) -> dict[str, Any]:
        if caller.role != "hub":
            # The trust list holds hubs only; anything else is refused and recorded.
            now = self._clock.now_ms()
            ref = await self._db.write(
                "denied",
                lambda tx: tx.append_ledger(
                    "denied",
                    now,
                    {"action": "oprf-evaluate", "code": "forbidden-role", "org": caller.org},
                    (caller.org,),
                ),
            )
            error = Forbidden(DenyCode.FORBIDDEN_ROLE, "Only hubs may evaluate.")
            error.ledger = [ref.to_json()]
            raise error
        if len(req.blinded) > self._max_batch:
            raise InvalidRequest(
                f"At most {self._max_batch} blinded elements per request.",
                errors=[{"loc": ["blinded"], "msg": f"more than {self._max_batch}"}],
            )
        wait = self._limit.take(caller.org, self._clock.monotonic(), len(req.blinded))
        if wait:
            self._metrics.rate_limited.labels(ROUTE, caller.org).inc()
            raise RateLimited(wait, f"Over this hub's limit; retry after {wait} s.")
        elements = list(req.blinded)
        if len(elements) <= _INLINE_MAX:
            evaluated = self._evaluate_all(elements)
        else:
            evaluated = await asyncio.to_thread(self._evaluate_all, elements)
        if isinstance(evaluated, int):
            raise InvalidRequest(
                "Not a blinded group element.",
                errors=[{"loc": ["blinded", evaluated], "msg": "not a group element"}],
            )
        day = time.strftime("%Y-%m-%d", time.gmtime(self._clock.now_ms() / 1000))
        self._usage[(caller.org, day)] += len(evaluated)
        self._metrics.oprf_evaluations.labels(caller.org).inc(len(evaluated))
        return {"evaluated": [b64u_encode(e) for e in evaluated]}

    def _evaluate_all(self, elements: list[str]) -> list[bytes] | int:
        """The evaluated elements, or the index of the first that is not a group element."""
        out = []
        for i, element in enumerate(elements):
            try:
                out.append(self._key.blind_evaluate(b64u_decode(element)))
            except (CryptoError, ValueError):
                return i
        return out

    async def flush_usage(self) -> None:
        if not self._usage:
            return
        counts, self._usage = dict(self._usage), collections.Counter()
        try:
            await self._db.write(
                "oprf_usage", functools.partial(national_store.add_oprf_usage, counts=counts)
            )
        except Exception:
            self._usage.update(counts)  # keep them for the next flush
            raise

    async def run_flusher(self, interval_s: float = 10.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush_usage()
            except Exception:
                log.exception("flushing the evaluation counts failed")
