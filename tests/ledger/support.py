"""Shared helpers of the ledger tests that need a running hub or a ledger file.

A hub here is the real thing (`build_hub` + `HubServer` on a loopback port, a real
SQLite file), started with ledger settings a test chooses; the public ledger
endpoints are read with a plain, unsigned HTTP client, and the database file with
plain `sqlite3`, read-only, as an auditor would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway.adapters.client import HubClient, Received
from gateway.ledger.checkpoint import Checkpoint, origin_for, verify_checkpoint
from gateway.web.hub_app import HubServer, build_hub
from tests.conftest import (
    HUB_ORG,
    Network,
    accede_all,
    free_port,
    make_hub_dir,
    synthetic_pid,
)

THEME = "huiselijk-geweld"
SUBJECT = "S1"
ORIGIN = origin_for(HUB_ORG)


@contextlib.asynccontextmanager
async def running_hub(tmp_path: Path, **hub_updates: Any) -> AsyncIterator[Network]:
    """A hub like the shared `network` one (members have acceded to the protocol),
    with some `[hub]` settings changed."""
    settings, keys = make_hub_dir(tmp_path, free_port())
    # model_copy does not validate: a misspelt name would silently change nothing.
    assert set(hub_updates) <= set(type(settings.hub).model_fields)
    settings = settings.model_copy(update={"hub": settings.hub.model_copy(update=hub_updates)})
    server = HubServer(build_hub(settings))
    await server.start()
    net = Network(f"http://127.0.0.1:{settings.http.port}", settings, server.hub, keys)
    try:
        await accede_all(net)
        yield net
    finally:
        for client in net.clients:
            await client.close()
        await server.stop()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    charset: str | None
    headers: Mapping[str, str]
    text: str


async def public_get(
    url: str,
    path: str,
    params: Mapping[str, str] | None = None,
    *,
    session: aiohttp.ClientSession | None = None,
) -> Reply:
    """An unsigned GET, as anyone on the internet can send it."""
    if session is None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as own:
            return await public_get(url, path, params, session=own)
    async with session.get(url + path, params=params) as resp:
        return Reply(
            resp.status, resp.content_type, resp.charset, dict(resp.headers), await resp.text()
        )


async def settle_warmup() -> None:
    """Wait for LedgerService's background cache warm-up (started by `start()`), so that
    the database is not closed under it."""
    for task in asyncio.all_tasks():
        if task.get_name() == "ledger-cache-warm":
            await task


async def hub_signing_key(net: Network) -> bytes:
    """The hub's Ed25519 key as its own directory lists it (role `hub`)."""
    peers = await net.client("zvh-test").directory(refresh=True)
    hub = peers[HUB_ORG]
    assert hub.role == "hub"
    return hub.signing_key


async def fetch_checkpoint(net: Network, key: bytes) -> tuple[Checkpoint, str]:
    reply = await public_get(net.url, "/api/v1/ledger/checkpoint")
    assert reply.status == 200, reply.text
    return verify_checkpoint(reply.text, ORIGIN, key), reply.text


async def wait_for_checkpoint(
    net: Network, key: bytes, size: int, *, timeout_s: float = 10.0
) -> tuple[Checkpoint, str, float]:
    """Poll the public checkpoint until it covers `size` entries; also how long it took."""
    start = time.monotonic()
    while True:
        cp, note = await fetch_checkpoint(net, key)
        elapsed = time.monotonic() - start
        if cp.size >= size:
            return cp, note, elapsed
        assert elapsed < timeout_s, f"no checkpoint covering {size} entries after {elapsed:.1f} s"
        await asyncio.sleep(0.02)


def ledger_rows(database: Path) -> list[tuple[int, str, bytes, bytes, bytes | None, bytes | None]]:
    """(idx, type, leaf_data, leaf_hash, body, salt) of every entry, read-only."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT idx, type, leaf_data, leaf_hash, body, salt FROM ledger ORDER BY idx"
        ).fetchall()
    finally:
        conn.close()
    return [
        (
            int(r[0]),
            str(r[1]),
            bytes(r[2]),
            bytes(r[3]),
            None if r[4] is None else bytes(r[4]),
            None if r[5] is None else bytes(r[5]),
        )
        for r in rows
    ]


def actors_of(database: Path) -> dict[int, set[str]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT idx, org FROM ledger_actors").fetchall()
    finally:
        conn.close()
    out: dict[int, set[str]] = {}
    for idx, org in rows:
        out.setdefault(int(idx), set()).add(str(org))
    return out


async def _one_message(client: HubClient, org: str) -> Received:
    for _ in range(20):
        messages = await client.fetch(wait=1)
        # The hub's notifications (an earlier case closed) are acknowledged and skipped.
        notices = [m.message_id for m in messages if m.kind == "notification"]
        if notices:
            await client.ack(notices)
        messages = [m for m in messages if m.kind != "notification"]
        if messages:
            [message] = messages
            return message
    raise AssertionError(f"nothing arrived in the inbox of {org}")


async def exchange_case(net: Network, case_ref: str, *, close: bool = True) -> list[int]:
    """One case's life through the hub: register, a dat-request to two partners, both
    answers (one with a sealed body), and the closure. Returns the ledger indexes the
    responses named, in order."""
    zvh = net.client("zvh-test")
    police = net.client("politie-test")
    care = net.client("vt-test")
    indexes: list[int] = []

    def note(response: Mapping[str, Any]) -> None:
        indexes.extend(int(ref["index"]) for ref in response["ledger"])

    note(
        await zvh.register_case(
            case_ref, THEME, [(SUBJECT, synthetic_pid())], ["politie-test", "vt-test"]
        )
    )
    note(await zvh.dat_request(case_ref, SUBJECT, ["politie-test", "vt-test"], {"q": "known?"}))
    request = await _one_message(police, "politie-test")
    note(await police.answer(request, "known", {"contact": f"team Noord for {case_ref}"}))
    await police.ack([request.message_id])
    request = await _one_message(care, "vt-test")
    note(await care.answer(request, "not-known"))
    await care.ack([request.message_id])
    received: list[Received] = []
    notices: list[Received] = []
    for _ in range(20):
        for m in await zvh.fetch(wait=1):
            # The `known` answer also brings a dat-match notification (metadata only).
            (notices if m.kind == "notification" else received).append(m)
        if len(received) >= 2:
            break
    assert sorted(m.decision or "" for m in received) == ["known", "not-known"]
    await zvh.ack([m.message_id for m in received + notices])
    if close:
        note(await zvh.close_case(case_ref))
    return indexes
