"""Fixtures of the HTTP-level hub tests: a raw `Wire` to the shared `network` hub, and
hubs of our own for what the shared fixture cannot do (a restart on the same files,
a short inbox visibility timeout, a metrics listener)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.web.hub_app import HubServer, build_hub
from tests.conftest import Network, accede_all, free_port, make_hub_dir
from tests.web.helpers import Wire


@dataclass
class RunningHub:
    """A hub this module started itself, which a test may restart on the same files."""

    net: Network
    server: HubServer
    wire: Wire

    async def restart(self) -> None:
        """Stop the server and start a fresh hub on the same settings and files, as a
        process restart would: everything in memory is lost, the database is kept."""
        await self.server.stop()
        self.server = HubServer(build_hub(self.net.settings))
        await self.server.start()
        self.net.hub = self.server.hub


@contextlib.asynccontextmanager
async def run_hub(
    tmp_path: Path,
    *,
    http: dict[str, Any] | None = None,
    messages: dict[str, Any] | None = None,
    **hub_updates: Any,
) -> AsyncIterator[RunningHub]:
    """A hub like the shared `network` one, with `http`, `messages` and `hub` settings
    changed."""
    settings, keys = make_hub_dir(tmp_path, free_port())
    # model_copy does not validate: a misspelt name would silently change nothing.
    assert set(http or {}) <= set(type(settings.http).model_fields)
    assert set(messages or {}) <= set(type(settings.messages).model_fields)
    assert set(hub_updates) <= set(type(settings.hub).model_fields)
    settings = settings.model_copy(
        update={
            "http": settings.http.model_copy(update=http or {}),
            "messages": settings.messages.model_copy(update=messages or {}),
            "hub": settings.hub.model_copy(update=hub_updates),
        }
    )
    server = HubServer(build_hub(settings))
    await server.start()
    net = Network(f"http://127.0.0.1:{settings.http.port}", settings, server.hub, keys)
    running = RunningHub(net, server, Wire(net.url, settings.authority))
    try:
        await accede_all(net)
        yield running
    finally:
        await running.wire.close()
        for client in net.clients:
            await client.close()
        await running.server.stop()


@pytest.fixture
async def wire(network: Network) -> AsyncIterator[Wire]:
    w = Wire(network.url, network.settings.authority)
    try:
        yield w
    finally:
        await w.close()


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with run_hub(tmp_path) as running:
        yield running


@pytest.fixture
async def metered(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub with its metrics listener on a port of its own."""
    async with run_hub(tmp_path, http={"metrics_port": free_port()}) as running:
        yield running


@pytest.fixture
async def short_lease(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub whose unacknowledged inbox messages become visible again after 0.5 s."""
    async with run_hub(tmp_path, inbox_visibility_timeout_s=0.5) as running:
        yield running
