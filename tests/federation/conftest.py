"""Fixtures of the national-check tests: the pseudonymiser, the index and N hubs, in
this test's event loop on free loopback ports, made by the national demo's own
`prepare_national` (so the demo's configuration is what is tested)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.client import HubClient
from gateway.config import Settings, load_settings
from gateway.crypto.keys import OrgKeys
from gateway.demo_national import Region, prepare_national
from gateway.web.hub_app import HubServer, build_hub
from gateway.web.index_app import Index, build_index, index_server
from gateway.web.node_app import NodeServer
from gateway.web.pseudonymiser_app import Pseudonymiser, build_pseudonymiser, pseudonymiser_server
from gateway.web.state import Hub
from tests.conftest import free_port
from tests.federation.support import eventually


async def _checked(hub: Hub) -> bool:
    return hub.national.canary_checks > 0


# RFC 9497 Appendix A.1.1: the pseudonymiser's key is DeriveKeyPair(a3 x 32, "test key").
RFC_SEED_HEX = "a3" * 32
RFC_INFO = "test key"
FAST = {"timeout_s": 2.0, "lease_days": 1.0, "renew_interval_s": 3600.0}


def _update(settings: Settings, section: str, values: Mapping[str, Any] | None) -> Settings:
    if not values:
        return settings
    current = getattr(settings, section)
    assert set(values) <= set(type(current).model_fields), values
    return settings.model_copy(update={section: current.model_copy(update=dict(values))})


@dataclass
class NationalNet:
    prepared: dict[str, Any]
    regions: list[Region]
    pseudonymiser: Pseudonymiser
    index: Index
    hubs: dict[str, Hub]
    keys: dict[str, OrgKeys]
    urls: dict[str, str]
    home: dict[str, str]  # partner org -> its hub's org
    servers: dict[str, HubServer | NodeServer] = field(default_factory=dict)
    clients: list[HubClient] = field(default_factory=list)

    def client(self, org: str) -> HubClient:
        c = HubClient(self.urls[self.home[org]], self.keys[org])
        self.clients.append(c)
        return c

    def hub(self, i: int) -> Hub:
        return self.hubs[self.regions[i].hub]

    async def stop_index(self) -> None:
        await self.servers["index"].stop()

    async def start_index(self) -> None:
        settings = load_settings(self.prepared["index_config"])
        self.index = build_index(settings)
        self.servers["index"] = index_server(self.index)
        await self.servers["index"].start()


@contextlib.asynccontextmanager
async def run_national(
    tmp_path: Path,
    *,
    hubs: int = 2,
    national: Mapping[str, Any] | None = None,
    pseudonymiser: Mapping[str, Any] | None = None,
    index: Mapping[str, Any] | None = None,
    hub_settings: Mapping[str, Any] | None = None,
    accede: bool = True,
) -> AsyncIterator[NationalNet]:
    prepared = prepare_national(
        tmp_path / "net",
        0,
        hubs=hubs,
        oprf_seed_hex=RFC_SEED_HEX,
        oprf_info=RFC_INFO,
        national={**FAST, **(national or {})},
        port_of=lambda _: free_port(),
    )
    ps_settings = _update(
        load_settings(prepared["pseudonymiser_config"]), "pseudonymiser", pseudonymiser
    )
    ix_settings = load_settings(prepared["index_config"])
    if index:
        from gateway.config import IndexSettings

        ix_settings = ix_settings.model_copy(
            update={"index": (ix_settings.index or IndexSettings()).model_copy(update=dict(index))}
        )
    ps = build_pseudonymiser(ps_settings)
    ix = build_index(ix_settings)
    built = {
        org: build_hub(_update(load_settings(config), "hub", hub_settings))
        for org, config in prepared["hub_configs"].items()
    }
    keys = {p["org"]: OrgKeys.load(p["key_file"]) for p in prepared["network"]["partners"]}
    for org, hub in built.items():
        keys[org] = hub.keys
    net = NationalNet(
        prepared=prepared,
        regions=prepared["regions"],
        pseudonymiser=ps,
        index=ix,
        hubs=built,
        keys=keys,
        urls={n["org"]: n["url"] for n in prepared["network"]["nodes"]},
        home={p["org"]: p["hub"] for p in prepared["network"]["partners"]},
    )
    net.servers["pseudonymiser"] = pseudonymiser_server(ps)
    net.servers["index"] = index_server(ix)
    for org, hub in built.items():
        net.servers[org] = HubServer(hub)
    started: list[HubServer | NodeServer] = []
    try:
        for server in net.servers.values():
            await server.start()
            started.append(server)
        for hub in built.values():  # each hub checks the canary at start (one evaluation)
            await eventually(functools.partial(_checked, hub), 30.0)
        if accede:
            for p in prepared["network"]["partners"]:
                await net.client(p["org"]).accede()
        yield net
    finally:
        for c in net.clients:
            await c.close()
        for server in reversed(list(net.servers.values())):
            await server.stop()


@pytest.fixture
async def nat(tmp_path: Path) -> AsyncIterator[NationalNet]:
    """Two regions, the pseudonymiser (RFC 9497 A.1.1 key) and the index."""
    async with run_national(tmp_path) as net:
        yield net
