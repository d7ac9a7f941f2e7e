"""Inbox items to the partner system: fetch, store, deliver, answer, acknowledge.

The order is what makes "nothing lost, nothing twice" hold across crashes:

1. The poller long-polls the hub inbox and stores each item as fetched (sealed) in
   the adapter's database, keyed by the hub's message id; an item seen again (the hub
   redelivers what is not acknowledged) is not stored twice.
2. The deliverer opens the item in memory and hands it to the sink (the partner's
   webhook, or the file drop's out/ folder) with `Idempotency-Key: inbox-<message_id>`,
   the same key on every attempt, so the partner can drop a repeat.
3. When the partner system replied to a dat- or wat-request with a decision, the
   sealed answer is stored, then sent; a retry sends the same stored bytes.
4. Only then is the item marked delivered, and only then acknowledged at the hub.

A failed attempt is retried with exponential backoff and full jitter; meanwhile the
item stays unacknowledged at the hub. After `max_attempts` the item becomes a dead
letter: the adapter holds it durably (ciphertext, in its own database), so it then
acknowledges it at the hub - otherwise the hub would keep redelivering an item the
adapter has already given up on. `dead-letters retry` puts it back in the queue.

Must not: log a body or anything from inside an envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from pydantic import ValidationError

from gateway.adapters.client import HubClient, HubError
from gateway.adapters.local_models import WebhookReply
from gateway.adapters.outbound import Outbound
from gateway.clock import Clock
from gateway.errors import CryptoError, InvalidRequest
from gateway.storage.adapter_store import AdapterStore, Delivery

log = logging.getLogger(__name__)
REQUEST_KINDS = ("dat-request", "wat-request")
IDLE_CHECK_S = 0.5  # how often the deliverer looks for due items (and offline retries)


def backoff_s(failures: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): a uniform
    wait in [0, min(cap, base * 2^(n-1))] after the n-th failure, so adapters that
    failed together do not retry together."""
    ceiling = min(cap_s, base_s * (2 ** max(0, failures - 1)))
    return rng.uniform(0.0, ceiling)


def safe_filename(name: str, n: int) -> str:
    """A sender's file name, made harmless: no folders, no hidden files, printable."""
    base = Path(name.replace("\\", "/")).name.lstrip(".")
    cleaned = "".join(c if c.isalnum() or c in "._- " else "_" for c in base)[:120].strip()
    return cleaned or f"bijlage-{n}"


class DeliveryFailed(Exception):
    """One attempt failed; `detail` is a status or an error class, never a body."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Sink(Protocol):
    async def deliver(self, item: dict[str, Any], key: str, attempt: int) -> dict[str, Any] | None:
        """Hand one opened item over; return the partner's reply (if any), or raise
        DeliveryFailed."""
        ...


class WebhookSink:
    def __init__(
        self,
        url: str,
        timeout_s: float,
        session: aiohttp.ClientSession,
        token: str | None = None,
    ) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.session = session
        self.token = token

    async def deliver(self, item: dict[str, Any], key: str, attempt: int) -> dict[str, Any] | None:
        headers = {
            "Idempotency-Key": key,
            "X-ZVH-Kind": str(item["kind"]),
            "X-ZVH-Attempt": str(attempt),
        }
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with self.session.post(
                self.url, json=item, headers=headers, timeout=self.timeout
            ) as resp:
                raw = await resp.read()
                if not 200 <= resp.status < 300:
                    raise DeliveryFailed(f"status {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(type(exc).__name__) from exc
        if not raw.strip():
            return None
        try:
            reply = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DeliveryFailed("reply is not JSON") from exc
        if not isinstance(reply, dict):
            raise DeliveryFailed("reply is not a JSON object")
        return reply


def write_atomically(folder: Path, name: str, data: bytes) -> Path:
    """Write `folder/name` so that a reader never sees half a file: a hidden temporary
    file in the same folder, fsynced, then renamed over the final name."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    return final


class FileDropSink:
    """Incoming items as `<dir>/out/<message_id>-<kind>.json` (written atomically)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    async def deliver(self, item: dict[str, Any], key: str, attempt: int) -> dict[str, Any] | None:
        name = f"{item['message_id']:010d}-{item['kind']}.json"
        data = json.dumps({**item, "idempotency_key": key}, indent=2, ensure_ascii=False)
        try:
            await asyncio.to_thread(write_atomically, self.out_dir, name, data.encode())
        except OSError as exc:
            raise DeliveryFailed(type(exc).__name__) from exc
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    base_s: float
    cap_s: float


class Deliverer:
    def __init__(  # noqa: PLR0917 - the composition root passes its parts in order
        self,
        client: HubClient,
        store: AdapterStore,
        outbound: Outbound,
        sink: Sink,
        policy: RetryPolicy,
        clock: Clock,
        *,
        poll_wait_s: int = 20,
        rng: random.Random | None = None,
        received_dir: Path | None = None,
        keep_days: float = 30.0,
    ) -> None:
        self.client = client
        self.store = store
        self.outbound = outbound
        self.sink = sink
        self.policy = policy
        self.clock = clock
        self.poll_wait_s = poll_wait_s
        self.rng = rng or random.SystemRandom()
        # Where incoming attachments are decrypted to, one folder per inbox item.
        self.received_dir = received_dir
        self.keep_ms = int(keep_days * 86_400_000)
        self._next_prune = 0.0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    # -- the hub side ---------------------------------------------------------------

    async def poll_once(self, wait: int) -> int:
        """One long-poll: store what came, acknowledge what is already settled here."""
        data = await self.client.call("GET", "/api/v1/inbox", query={"wait": wait, "limit": 100})
        settled: list[int] = []
        count = 0
        for message in data.get("messages", []):
            if not isinstance(message, dict) or "message_id" not in message:
                continue
            row, _new = await self.store.receive(message, self.clock.now_ms())
            count += 1
            if row.state != "pending":
                settled.append(row.message_id)  # redelivered after we settled it: ack again
        if settled:
            await self._ack(settled)
        if count:
            self.wake()
        return count

    async def run_poller(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self.poll_once(self.poll_wait_s)
                failures = 0
            except Exception as exc:  # the hub, the network or the database: try again
                failures += 1
                log.warning("inbox poll failed", extra={"error": type(exc).__name__})
                delay = backoff_s(failures, 0.5, 10.0, self.rng)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(0.2, delay))

    async def _ack(self, ids: list[int]) -> None:
        await self.client.call("POST", "/api/v1/inbox/ack", body={"message_ids": ids})
        await self.store.mark_acked(ids)

    async def ack_settled(self) -> None:
        try:
            ids = await self.store.to_ack()
            if ids:
                await self._ack(ids)
        except Exception as exc:
            # Settled here, so nothing is lost: the ack is tried again next round.
            log.warning("inbox ack failed", extra={"error": type(exc).__name__})

    # -- the partner side -------------------------------------------------------------

    async def run_deliverer(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                due = await self.store.due(self.clock.now_ms())
            except Exception:  # the database is busy or failing: look again shortly
                log.exception("reading due deliveries failed")
                due = []
            for delivery in due:
                if stop.is_set():
                    break
                await self.deliver_guarded(delivery)
            await self.ack_settled()
            await self._prune()
            if due:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=IDLE_CHECK_S)

    async def _prune(self) -> None:
        """Once an hour: forget what is long settled (see AdapterStore.prune)."""
        if self.clock.monotonic() < self._next_prune:
            return
        self._next_prune = self.clock.monotonic() + 3600.0
        try:
            items, keys = await self.store.prune(self.clock.now_ms() - self.keep_ms)
        except Exception:
            log.exception("pruning the adapter database failed")
            return
        if items or keys:
            log.info("pruned settled state", extra={"items": items, "keys": keys})

    async def deliver_guarded(self, delivery: Delivery) -> None:
        try:
            await self.deliver_one(delivery)
        except Exception as exc:  # never let one item stop the loop
            log.exception("delivery failed unexpectedly", extra={"error": type(exc).__name__})
            try:
                await self._failed(delivery, delivery.attempts + 1, type(exc).__name__)
            except Exception:  # the item stays due and is tried again
                log.exception("recording a failed delivery failed")

    async def deliver_one(self, delivery: Delivery) -> None:
        mid = delivery.message_id
        attempt = delivery.attempts + 1
        reply_call = delivery.reply
        if reply_call is None:
            if delivery.message is None:
                await self.store.mark_dead(mid, self.clock.now_ms(), "no stored item")
                return
            try:
                opened = await self.client.open(delivery.message)
            except (CryptoError, KeyError, TypeError, ValueError):
                # Never acted on: kept (sealed) as a dead letter for the operators.
                log.warning("inbox item failed its checks", extra={"kind": delivery.kind})
                await self.store.mark_dead(mid, self.clock.now_ms(), "invalid-envelope")
                return
            except (aiohttp.ClientError, TimeoutError, HubError) as exc:
                await self._failed(delivery, attempt, f"directory: {type(exc).__name__}")
                return
            item: dict[str, Any] = {
                "message_id": mid,
                "kind": opened.kind,
                "exchange_id": opened.exchange_id,
                "from": opened.sender,
                "case_ref": opened.case_ref,
                "subject_ref": opened.subject_ref,
                "decision": opened.decision,
                "reason_code": opened.reason_code,
                "wat": opened.wat,
                "body": opened.body,
                "attempt": attempt,
            }
            if opened.notification is not None:
                item["notification"] = opened.notification
            try:
                item["body"] = await self._fetch_attachments(mid, opened.body)
            except (aiohttp.ClientError, TimeoutError, HubError, CryptoError, OSError) as exc:
                await self._failed(delivery, attempt, f"attachment: {type(exc).__name__}")
                return
            try:
                reply = await self.sink.deliver(item, f"inbox-{mid}", attempt)
            except DeliveryFailed as exc:
                await self._failed(delivery, attempt, exc.detail)
                return
            made = await self._reply_call(delivery, reply)
            if isinstance(made, str):
                await self._failed(delivery, attempt, made)
                return
            reply_call = made
            await self.store.record_attempt(mid, attempt, self.clock.now_ms(), "accepted", None)
            if reply_call is not None:
                await self.store.set_reply(mid, reply_call)
        if reply_call is not None and not delivery.reply_sent:
            try:
                await self.client.call(
                    reply_call["method"], reply_call["path"], body=reply_call["body"]
                )
            except HubError as exc:
                if exc.status in (401, 429) or exc.status >= 500:
                    await self._failed(delivery, attempt, f"hub {exc.status}")
                    return
                # The hub refused this answer for good: retrying the same bytes is useless.
                await self.store.mark_dead(mid, self.clock.now_ms(), f"answer refused: {exc.code}")
                return
            except (aiohttp.ClientError, TimeoutError) as exc:
                await self._failed(delivery, attempt, f"hub: {type(exc).__name__}")
                return
            await self.store.mark_reply_sent(mid)
        await self.store.mark_delivered(mid, self.clock.now_ms())
        log.info("item delivered", extra={"kind": delivery.kind, "attempt": attempt})

    async def _fetch_attachments(
        self, message_id: int, body: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Decrypt a message's attachments to files, and hand the partner system their
        paths instead of the descriptors (which hold the keys). A file already there was
        verified when it was written (fetch_attachment keeps only a complete, matching
        file), so a retry does not fetch it again - the hub may have deleted the blob."""
        if body is None or not isinstance(body.get("attachments"), list):
            return body
        if self.received_dir is None:
            raise OSError("no folder for received attachments")
        folder = self.received_dir / f"{message_id:010d}"
        files = []
        for n, descriptor in enumerate(body["attachments"], start=1):
            name = safe_filename(str(descriptor.get("filename", "")), n)
            dest = folder / f"{n}-{name}"
            if not dest.exists():
                await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
                await self.client.fetch_attachment(descriptor, dest)
            files.append(
                {
                    "filename": descriptor.get("filename"),
                    "media_type": descriptor.get("media_type"),
                    "size": dest.stat().st_size,
                    "sha256": descriptor.get("sha256_plain"),
                    "path": str(dest),
                }
            )
        return {**body, "attachments": files}

    async def _reply_call(
        self, delivery: Delivery, reply: dict[str, Any] | None
    ) -> dict[str, Any] | str | None:
        """The sealed answer to send for the partner's reply; a string names why the
        reply is unusable (a failed attempt); None when there is nothing to answer."""
        if reply is None or delivery.kind not in REQUEST_KINDS:
            return None
        try:
            parsed = WebhookReply.model_validate(reply)
        except ValidationError:
            return "invalid reply"
        if parsed.decision is None:
            return None
        try:
            return await self.outbound.answer_call(
                delivery, parsed.decision, parsed.reason_code, parsed.body, loc=("reply",)
            )
        except InvalidRequest:
            return "invalid reply"

    async def _failed(self, delivery: Delivery, attempt: int, detail: str) -> None:
        now = self.clock.now_ms()
        await self.store.record_attempt(delivery.message_id, attempt, now, "failed", detail)
        if attempt >= self.policy.max_attempts:
            await self.store.mark_dead(delivery.message_id, now, detail)
            log.warning("item is a dead letter", extra={"kind": delivery.kind, "attempts": attempt})
            return
        wait = backoff_s(attempt, self.policy.base_s, self.policy.cap_s, self.rng)
        await self.store.schedule_retry(delivery.message_id, now + int(wait * 1000), detail)
