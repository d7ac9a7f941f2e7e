"""Per-organisation store-and-forward inbox: long-poll fetch, leases, acks.

Messages are durable rows (written in the same job as the step that created
them). Leases are in memory on purpose: a fetched but unacknowledged message is
hidden for the visibility timeout and then delivered again; after a crash every
unacknowledged message is simply visible again (at-least-once; an ack makes it
exactly-once from the partner's point of view).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from gateway.clock import Clock
from gateway.errors import NotFound
from gateway.services.auth import RequestAuth
from gateway.storage import stores
from gateway.storage.database import Database, Tx
from gateway.storage.records import InboxMessage


class Waiters:
    """Long-poll wake-ups, per organisation. Runs on the event loop only."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    def add(self, org: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(org, set()).add(fut)
        return fut

    def discard(self, org: str, fut: asyncio.Future[None]) -> None:
        waiting = self._waiting.get(org)
        if waiting is not None:
            waiting.discard(fut)
            if not waiting:
                del self._waiting[org]

    def notify(self, org: str) -> None:
        for fut in self._waiting.pop(org, ()):
            if not fut.done():
                fut.set_result(None)

    def wake_all(self) -> None:
        for org in list(self._waiting):
            self.notify(org)


def _labels(msg: InboxMessage) -> dict[str, Any]:
    """A message's JSON without its envelope."""
    out: dict[str, Any] = {
        "message_id": msg.message_id,
        "kind": msg.kind,
        "exchange_id": msg.exchange_id,
        "from": msg.sender,
        "case_ref": msg.case_ref,
        "subject_ref": msg.subject_ref,
    }
    if msg.decision is not None:
        out["decision"] = msg.decision
    if msg.reason_code is not None:
        out["reason_code"] = msg.reason_code
    return out


def message_json(msg: InboxMessage) -> dict[str, Any]:
    out = _labels(msg)
    if msg.envelope is not None:
        stored = json.loads(msg.envelope)
        if "v" in stored:  # a bare envelope
            out["envelope"] = stored
        else:  # an envelope with metadata the hub checked (e.g. a wat-request's basis)
            if stored.get("envelope") is not None:
                out["envelope"] = stored["envelope"]
            out.update({k: v for k, v in stored.items() if k != "envelope"})
    return out


# How a bare envelope's stored JSON starts: `Envelope` dumps "v" first, compact.
_BARE_ENVELOPE = '{"v":'


def messages_body(messages: Sequence[InboxMessage]) -> bytes:
    """`{"messages": [...]}` as JSON bytes, each item `message_json`'s. A bare
    envelope's stored JSON (which the hub itself wrote, compact, from a validated
    model) goes in as it is, not parsed and encoded again: most of a fetch's bytes."""
    parts: list[str] = []
    for msg in messages:
        if msg.envelope is not None and msg.envelope.startswith(_BARE_ENVELOPE):
            head = json.dumps(_labels(msg), separators=(",", ":"))
            parts.append(f'{head[:-1]},"envelope":{msg.envelope}}}')
        else:
            parts.append(json.dumps(message_json(msg), separators=(",", ":")))
    return ('{"messages":[' + ",".join(parts) + "]}").encode()


def _pending(tx: Tx, *, org: str, limit: int, leased: list[int]) -> list[InboxMessage]:
    return stores.pending_messages(tx, org, limit, leased)


class InboxService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        waiters: Waiters,
        *,
        visibility_s: float = 30.0,
        max_wait_s: int = 30,
        on_ack: Callable[[Tx, str, Sequence[int], int], None] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._waiters = waiters
        self._visibility_s = visibility_s
        self.max_wait_s = max_wait_s
        self._leases: dict[str, dict[int, float]] = {}
        # Runs inside the ack job (attachments whose carrying message was acknowledged).
        self._on_ack = on_ack

    def _active_leases(self, org: str) -> dict[int, float]:
        leases = self._leases.setdefault(org, {})
        now = self._clock.monotonic()
        for mid in [m for m, until in leases.items() if until <= now]:
            del leases[mid]
        return leases

    async def fetch(
        self,
        auth: RequestAuth,
        *,
        wait_s: float,
        limit: int,
        connected: Callable[[], bool] = lambda: True,
    ) -> list[InboxMessage]:
        """Messages for `auth.org`, leased for the visibility timeout; waits up to
        `wait_s` for the first. `connected` says whether the caller is still there: a
        poll whose client went away (the HTTP layer does not cancel it) must not lease
        messages nobody will receive, or they would wait out the lease."""
        org = auth.org
        deadline = self._clock.monotonic() + min(wait_s, self.max_wait_s)
        while True:
            if not connected():
                return []
            # Register before reading, so a message committed in between still wakes us.
            waiter = self._waiters.add(org)
            try:
                leased = list(self._active_leases(org))
                found = await self._db.read(
                    "inbox_fetch", functools.partial(_pending, org=org, limit=limit, leased=leased)
                )
                # Another poll of the same organisation may have leased some meanwhile.
                leases = self._active_leases(org)
                fresh = [m for m in found if m.message_id not in leases]
                remaining = deadline - self._clock.monotonic()
                if fresh or remaining <= 0:
                    if not connected():
                        return []
                    until = self._clock.monotonic() + self._visibility_s
                    for m in fresh:
                        leases[m.message_id] = until
                    return fresh
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), timeout=remaining)
            finally:
                self._waiters.discard(org, waiter)

    async def ack(self, auth: RequestAuth, message_ids: list[int], *, strict: bool) -> list[int]:
        now = self._clock.now_ms()

        def job(tx: Tx) -> list[int]:
            auth.persist(tx)
            found = stores.ack_messages(tx, auth.org, message_ids, now)
            if strict and len(found) != len(message_ids):
                raise NotFound("Unknown message.")
            if self._on_ack is not None and found:
                self._on_ack(tx, auth.org, found, now)
            return found

        acked = await self._db.write("inbox_ack", job)
        leases = self._leases.get(auth.org, {})
        for mid in acked:
            leases.pop(mid, None)
        return acked
