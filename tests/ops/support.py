"""What the operations tests share: a hub run as an OS process with its metrics
listener, partners that sign their accessions and open a case, a dat-request load,
and readers for the hub's metrics and logs.

The hub's folder is made in-process (`tests.conftest.make_hub_dir`, fast) and the
hub runs as `python -m gateway serve`, as an operator runs it, with its stdout and
stderr in files (`tests.e2e.hubproc.HubProcess`).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.adapters.client import HubClient, HubError
from gateway.config import Settings, load_settings
from gateway.crypto.keys import OrgKeys
from tests.conftest import HUB_ORG, MEMBERS, free_port, make_hub_dir, synthetic_pid
from tests.e2e.hubproc import HubProcess, HubSetup, Processes

ZVH = "zvh-test"
POLICE = "politie-test"
GGZ = "ggz-test"
RECIPIENTS = (GGZ, POLICE)  # sorted, as the hub lists them
THEME = "huiselijk-geweld"


@dataclass
class OpsHub:
    """A hub process with a metrics listener, and the partners' keys."""

    setup: HubSetup
    settings: Settings
    keys: dict[str, OrgKeys]
    metrics_port: int
    proc: HubProcess

    @property
    def url(self) -> str:
        return self.setup.url

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def hub_key(self) -> bytes:
        return OrgKeys.load(self.settings.node.key_file).signing_key

    def client(self, org: str) -> HubClient:
        return HubClient(self.url, self.keys[org], timeout_s=15.0)


def make_ops_hub(tmp_path: Path, procs: Processes, **toml: str) -> OpsHub:
    """A hub folder like the shared fixture's, its metrics listener on a free port,
    `toml` as extra `[hub]` keys; started as a process (not yet with accessions)."""
    port, metrics_port = free_port(), free_port()
    settings, keys = make_hub_dir(tmp_path, port)
    assert settings.source is not None
    config = settings.source
    text = config.read_text(encoding="utf-8")
    assert "# metrics_port = 9080\n" in text
    text = text.replace("# metrics_port = 9080\n", f"metrics_port = {metrics_port}\n")
    for key, value in toml.items():
        text = text.replace("[hub]\n", f"[hub]\n{key} = {value}\n", 1)
    config.write_text(text, encoding="utf-8")
    settings = load_settings(config)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    setup = HubSetup(
        hub_org=HUB_ORG,
        hub_dir=config.parent,
        config=config,
        database=settings.node.database,
        port=port,
        key_files={},
        log_dir=log_dir,
    )
    hub = HubProcess(setup, procs)
    hub.start()
    return OpsHub(setup, settings, keys, metrics_port, hub)


async def open_case(
    hub: OpsHub,
    case_ref: str,
    subject_ref: str,
    *,
    participants: Sequence[str] = RECIPIENTS,
    members: Sequence[str] = MEMBERS,
) -> None:
    """The members sign their accessions; the ZVH registers the case."""
    for org in members:
        async with hub.client(org) as client:
            await client.accede()
    async with hub.client(ZVH) as zvh:
        await zvh.register_case(case_ref, THEME, [(subject_ref, synthetic_pid())], participants)


# -- a load of dat-requests ----------------------------------------------------------------


@dataclass
class DatLoad:
    """Concurrent senders of dat-requests; `acked` maps each exchange id that got its
    202 to the monotonic time the answer arrived."""

    hub: OpsHub
    case_ref: str
    subject_ref: str
    person: dict[str, str]
    senders: int = 4
    acked: dict[str, float] = field(default_factory=dict)
    failures: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._sender()) for _ in range(self.senders)]

    async def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} acked in {timeout_s} s"
            assert all(not t.done() for t in self._tasks), "a sender died"
            await asyncio.sleep(0.02)

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self._tasks)

    async def _sender(self) -> None:
        async with self.hub.client(ZVH) as client:
            await client.directory()
            while not self.stop.is_set():
                xid = str(uuid.uuid4())
                try:
                    await client.dat_request(
                        self.case_ref, self.subject_ref, RECIPIENTS, self.person, exchange_id=xid
                    )
                except (aiohttp.ClientError, HubError, TimeoutError, OSError):
                    # Not acknowledged (the hub is stopping, or stopped): nothing to check.
                    self.failures += 1
                    await asyncio.sleep(0.05)
                    continue
                self.acked[xid] = time.monotonic()


# -- reading what the hub wrote --------------------------------------------------------------


def ledger_exchange_ids(database: Path) -> set[str]:
    """The exchange ids of the dat-request entries in a ledger file."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT body FROM ledger WHERE type = 'dat-request'").fetchall()
    return {json.loads(r[0])["exchange_id"] for r in rows if r[0] is not None}


def ledger_and_checkpoint_sizes(database: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        entries = db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
        signed = db.execute("SELECT COALESCE(MAX(size), 0) FROM checkpoints").fetchone()[0]
    return int(entries), int(signed)


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, dict[str, str], str]:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return resp.status, dict(resp.headers), resp.read().decode()


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format -> (name, labels, value) per sample."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m is not None, line
        labels = {lm["key"]: lm["value"] for lm in _LABEL.finditer(m["labels"] or "")}
        out.append((m["name"], labels, float(m["value"])))
    return out


def log_records(*paths: Path) -> list[dict[str, Any]]:
    """Every line of the hub's stderr is one JSON object (fails the test otherwise)."""
    records = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                assert isinstance(record, dict), line
                records.append(record)
    return records


def occurrences(needles: dict[str, str], haystacks: dict[str, Iterable[str]]) -> list[str]:
    """Which needle occurs (case-insensitively) in which haystack."""
    hits = []
    for where, texts in haystacks.items():
        blob = "\n".join(texts).lower()
        hits += [f"{what} in {where}" for what, n in needles.items() if n.lower() in blob]
    return hits
