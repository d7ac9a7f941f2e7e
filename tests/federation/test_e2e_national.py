"""The national check end to end: three hubs, the pseudonymiser and the index, each its
own OS process (`python -m gateway serve`) on loopback, and the partners as clients.

A subject registered in a case at hub A is found by a partner of hub B (hub A and its
contact route), is not found after closure and lease expiry, is found again when
re-registered; with the index hung or stopped the answer comes within the deadline
and names it unreachable. Afterwards the raw database files and logs of every node
are searched for the person's BSN, name and birth date.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.client import HubClient
from gateway.crypto.encoding import b64u_decode, b64u_encode
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import blind, finalize
from gateway.demo_national import Region, prepare_national
from tests.conftest import BIRTH, BSN, NAME, free_port
from tests.crypto.test_oprf import RFC_BLIND, RFC_VECTORS
from tests.e2e.hubproc import Processes, iter_files
from tests.federation.conftest import RFC_INFO, RFC_SEED_HEX
from tests.federation.nodeproc import NodeProcess

pytestmark = pytest.mark.e2e

DEADLINE_S = 1.0
LEASE_S = 4.0
BIRTH_DATE = f"{BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}"
PERSON = {"bsn": BSN, "name": NAME, "birth_date": BIRTH_DATE}


class Partners:
    def __init__(self, prepared: dict[str, Any]) -> None:
        urls = {n["org"]: n["url"] for n in prepared["network"]["nodes"]}
        self.clients = {
            p["org"]: HubClient(urls[p["hub"]], OrgKeys.load(p["key_file"]), timeout_s=20)
            for p in prepared["network"]["partners"]
        }

    def __getitem__(self, org: str) -> HubClient:
        return self.clients[org]

    async def close(self) -> None:
        for c in self.clients.values():
            await c.close()


async def until(check: Any, timeout_s: float) -> float:
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout_s, "condition not met in time"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def matches(client: HubClient, pid: str) -> list[tuple[str, str, str]]:
    res = await client.known_check(pid, "zsm-advies")
    return [(m["hub"], m["status"], m["contact"]) for m in res["matches"]]


async def scenario(
    prepared: dict[str, Any], index: NodeProcess, partners: Partners
) -> dict[str, Any]:
    a, b, c = prepared["regions"]
    assert isinstance(a, Region)
    for p in prepared["network"]["partners"]:
        await partners[p["org"]].accede()

    # RFC 9497 A.1.1 through hub B and the pseudonymiser process (key from the RFC's seed).
    elements = [blind(bytes.fromhex(v[0]), RFC_BLIND)[1] for v in RFC_VECTORS]
    res = await partners[b.zvh].call(
        "POST", "/api/v1/pseudonyms/evaluate", body={"blinded": [b64u_encode(e) for e in elements]}
    )
    assert [b64u_decode(e).hex() for e in res["evaluated"]] == [v[2] for v in RFC_VECTORS]
    outputs = [
        finalize(bytes.fromhex(v[0]), RFC_BLIND, b64u_decode(e)).hex()
        for v, e in zip(RFC_VECTORS, res["evaluated"], strict=True)
    ]
    assert outputs == [v[3] for v in RFC_VECTORS]

    # Hub A's ZVH registers a case; it asks its participants about the person (sealed).
    zvh_a, om_b, zvh_c = partners[a.zvh], partners[b.om], partners[c.zvh]
    pid = await zvh_a.pseudonym(BSN, BIRTH_DATE)
    await zvh_a.register_case("ZVH-A-0001", "huiselijk-geweld", [("S1", pid)], [a.vt])
    await zvh_a.dat_request("ZVH-A-0001", "S1", [a.vt], PERSON)

    # A partner of hub B computes the same pid through its own hub, and finds hub A.
    assert await om_b.pseudonym(BSN, BIRTH) == pid
    found = [(a.hub, "open", a.contact)]

    async def b_finds_a() -> bool:
        return await matches(om_b, pid) == found

    await until(b_finds_a, 10)
    assert await matches(zvh_c, pid) == found
    assert await matches(om_b, await om_b.pseudonym("111222333", "19751130")) == []

    # Closure: the registration turns closed, is not renewed, and expires.
    await zvh_a.close_case("ZVH-A-0001")

    async def b_finds_nothing() -> bool:
        return await matches(om_b, pid) == []

    await until(b_finds_nothing, LEASE_S + 6)
    # Re-registered in a new case: found again.
    await zvh_a.register_case("ZVH-A-0002", "verward-gedrag", [("S1", pid)], [a.vt])
    await until(b_finds_a, 10)

    # The index hangs (SIGSTOP): the answer comes within the deadline, naming it.
    index.signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        hung = await om_b.known_check(pid, "zsm-advies")
        hung_s = time.monotonic() - start
    finally:
        index.signal(signal.SIGCONT)
    assert (hung["matches"], hung["unreachable"]) == ([], ["index"])
    assert hung_s < DEADLINE_S + 0.5
    # The index is stopped: at once, and hub A still answers for its own open case.
    assert index.stop() == 0
    start = time.monotonic()
    down = await om_b.known_check(pid, "zsm-advies")
    down_s = time.monotonic() - start
    assert (down["matches"], down["unreachable"]) == ([], ["index"])
    assert down_s < DEADLINE_S + 0.5
    own = await zvh_a.known_check(pid, "verward-gedrag")
    assert ([m["hub"] for m in own["matches"]], own["unreachable"]) == ([a.hub], ["index"])
    return {"pid": pid, "hung_s": hung_s, "down_s": down_s}


def needles() -> dict[str, bytes]:
    return {
        "bsn": BSN.encode(),
        "name": NAME.encode(),
        "surname": NAME.split()[-1].encode(),
        "birth date": BIRTH_DATE.encode(),
        "birth date (compact)": BIRTH.encode(),
    }


def test_national_check_between_processes(tmp_path: Path, procs: Processes) -> None:
    prepared = prepare_national(
        tmp_path / "net",
        0,
        hubs=3,
        oprf_seed_hex=RFC_SEED_HEX,
        oprf_info=RFC_INFO,
        national={
            "timeout_s": DEADLINE_S,
            "lease_days": LEASE_S / 86_400,
            "renew_interval_s": 1.0,
        },
        port_of=lambda _: free_port(),
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    urls = {n["org"]: n["url"] for n in prepared["network"]["nodes"]}
    national = {
        "pseudonymiser": NodeProcess(
            "pseudonymiser", prepared["pseudonymiser_config"], urls["pseudonymiser-nl"], logs, procs
        ),
        "index": NodeProcess("index", prepared["index_config"], urls["index-nl"], logs, procs),
    }
    hubs = {
        org: NodeProcess(org, config, urls[org], logs, procs)
        for org, config in prepared["hub_configs"].items()
    }
    for group in (national, hubs):
        for node in group.values():
            node.spawn()
        for node in group.values():
            node.wait_ready()

    partners = Partners(prepared)

    async def run() -> dict[str, Any]:
        try:
            return await scenario(prepared, national["index"], partners)
        finally:
            await partners.close()

    result = asyncio.run(run())
    pid = result["pid"]
    for node in (*hubs.values(), national["pseudonymiser"]):
        started = time.monotonic()
        assert node.stop() == 0, node.logs()
        assert time.monotonic() - started < 10.0
    for node in (*hubs.values(), *national.values()):
        messages = {str(line["msg"]) for line in node.log_lines()}
        role = "hub" if node in hubs.values() else node.name
        assert {f"{role} ready", f"{role} stopped"} <= messages, node.logs()

    # Acceptance 3: no BSN, name or birth date in any node's files or logs.
    files = {str(p.relative_to(tmp_path)): p.read_bytes() for p in iter_files(tmp_path)}
    assert any(name.endswith("index.sqlite3") for name in files)
    assert any(name.endswith("pseudonymiser.sqlite3") for name in files)
    assert sum(name.endswith(".stderr.log") for name in files) == 5
    hits = [
        f"{what} in {where}"
        for where, data in files.items()
        for what, needle in needles().items()
        if needle.lower() in data.lower()
    ]
    assert hits == []
    # ... while the search reads real content: the pid is where it may be.
    a = prepared["regions"][0]
    hub_a = b"".join(v for k, v in files.items() if k.startswith(f"net/{a.hub}/hub.sqlite3"))
    index_db = b"".join(v for k, v in files.items() if k.startswith("net/index/index.sqlite3"))
    assert pid.encode() in hub_a
    assert bytes.fromhex(pid) in index_db
    assert b"known-check" in b"".join(v for k, v in files.items() if "hub.sqlite3" in k)
