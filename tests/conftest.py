"""Shared fixtures: a real hub on a loopback port with a real SQLite file, and the
demo-like partners' keys. No mocks of our own core: tests talk HTTP to the hub."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from gateway.adapters.client import HubClient
from gateway.clock import Clock, SystemClock
from gateway.config import Settings, load_settings
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import derive_key_pair, evaluate, pid_input
from gateway.services import admin
from gateway.web.hub_app import HubServer, build_hub
from gateway.web.state import Hub

# Fixtures shared by the tests that run OS processes (`procs`).
pytest_plugins = ["tests.e2e.hubproc"]

# CI must be reproducible: the same examples on every run (a failure found locally is
# kept by the example database). Timing deadlines are meaningless on a shared 2-core box.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=None, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")

HUB_ORG = "hub-test"
# (org, role, domain)
PARTNERS = (
    ("zvh-test", "zvh", "bestuur"),
    ("politie-test", "partner", "straf"),
    ("vt-test", "partner", "zorg"),
    ("ggz-test", "partner", "zorg"),
    ("woon-test", "incidental", "sociaal"),
)
# Synthetic person: passes the 11-test, belongs to nobody.
BSN = "230857103"
BIRTH = "19800203"
NAME = "Barend Testmans"
_TEST_OPRF_KEY, _ = derive_key_pair(b"\x07" * 32, b"zvh-gateway tests")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on, never the same one twice in a test run: the
    OS may hand a just-closed ephemeral port out again, and two nodes of one test on
    one port would answer each other's requests."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def free_port_pair() -> int:
    """A port P with P + 1 free as well (the demo's API and metrics listeners)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        if port + 1 not in _HANDED_OUT:
            _HANDED_OUT.add(port + 1)
            return port


def synthetic_pid(bsn: str = BSN, birth: str = BIRTH) -> str:
    return evaluate(_TEST_OPRF_KEY, pid_input(bsn, birth)).hex()


@dataclass
class Network:
    url: str
    settings: Settings
    hub: Hub
    keys: dict[str, OrgKeys]
    clients: list[HubClient] = field(default_factory=list)

    def client(self, org: str, *, clock: Clock | None = None) -> HubClient:
        c = HubClient(self.url, self.keys[org], clock=clock)
        self.clients.append(c)
        return c


PROTOCOL_TEXT = "Privacyprotocol Testregio, versie 1.\n\nDeelnemers delen alleen wat nodig is.\n"
ALL_THEMES = [
    "huiselijk-geweld",
    "verward-gedrag",
    "radicalisering",
    "re-integratie",
    "jeugd-groepen",
    "zsm-advies",
]


def make_hub_dir(tmp_path: Path, port: int) -> tuple[Settings, dict[str, OrgKeys]]:
    """A fresh hub with the test partners registered and a privacy protocol published."""
    clock = SystemClock()
    paths = admin.init_hub(tmp_path / "hub", HUB_ORG, clock, port=port)
    settings = load_settings(paths.config)
    admin.publish_protocol(
        settings, clock, text=PROTOCOL_TEXT.encode(), title="Privacyprotocol", themes=ALL_THEMES
    )
    keys: dict[str, OrgKeys] = {}
    for org, role, domain in PARTNERS:
        keys[org] = OrgKeys.generate(org)
        admin.add_partner(
            settings, clock, public=keys[org].public(), role=role, domain=domain, name=None
        )
    keys["outsider"] = OrgKeys.generate("outsider")  # never registered
    return settings, keys


MEMBERS = ("zvh-test", "politie-test", "vt-test", "ggz-test")


async def accede_all(net: Network, orgs: tuple[str, ...] = MEMBERS) -> None:
    """The partners sign their accessions to the protocol, as real partners do."""
    for org in orgs:
        await net.client(org).accede()


@pytest.fixture
async def bare_network(tmp_path: Path) -> AsyncIterator[Network]:
    """A hub with its partners registered and a protocol published, nothing signed yet."""
    settings, keys = make_hub_dir(tmp_path, free_port())
    hub = build_hub(settings)
    server = HubServer(hub)
    await server.start()
    net = Network(f"http://127.0.0.1:{settings.http.port}", settings, hub, keys)
    try:
        yield net
    finally:
        for c in net.clients:
            await c.close()
        await server.stop()


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    """The usual test network: every member has signed its accession."""
    settings, keys = make_hub_dir(tmp_path, free_port())
    hub = build_hub(settings)
    server = HubServer(hub)
    await server.start()
    net = Network(f"http://127.0.0.1:{settings.http.port}", settings, hub, keys)
    try:
        await accede_all(net)
        yield net
    finally:
        for c in net.clients:
            await c.close()
        await server.stop()
