"""Helpers of the national-check tests: reading a node's database, waiting for the
index sync, a server that accepts connections and never answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.crypto.httpsig import sign_request
from gateway.crypto.keys import OrgKeys
from gateway.web.state import Hub

CASE_THEME = "huiselijk-geweld"


def rows(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        return list(conn.execute(sql, params).fetchall())


def ledger_bodies(database: Path, entry_type: str) -> list[dict[str, Any]]:
    return [
        json.loads(r[0])
        for r in rows(database, "SELECT body FROM ledger WHERE type = ? ORDER BY idx", entry_type)
    ]


async def synced(hub: Hub) -> None:
    """Push the hub's pending index outbox now (as the background task would)."""
    assert hub.national_link is not None
    await hub.national_link.sync.sync_once()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> float:
    """Poll `check` until it holds; returns the seconds it took."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def black_hole(port: int) -> AsyncIterator[None]:
    """Accept TCP connections on `port` and never answer (a hung service)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(swallow, "127.0.0.1", port)
    try:
        yield
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


def signed_headers(
    keys: OrgKeys, authority: str, method: str, path: str, body: bytes
) -> dict[str, str]:
    """Correct PROTOCOL §2 headers for a request to a node whose authority is `authority`."""
    headers = sign_request(
        keys=keys,
        method=method,
        authority=authority,
        path=path,
        query="",
        body=body,
        content_type="application/json" if body else None,
        created=int(time.time()),
    )
    if body:
        headers["Content-Type"] = "application/json"
    return headers
