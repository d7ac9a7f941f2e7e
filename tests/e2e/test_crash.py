"""kill -9 during a burst of dat-requests: what was acknowledged is durable, once.

Eight concurrent senders post dat-requests (two recipients each) to a hub process;
the hub is SIGKILLed at a random moment mid-burst, and restarted on the same
database, three times. Checked:

- after every kill, on a copy of the files exactly as the crash left them: every
  acknowledged (202) exchange is in the ledger and in `exchanges`, the ledger is
  gap-free, and nothing present is half-written (each exchange has its one ledger
  entry, its recipients and one inbox message per recipient);
- a request that was in flight is retried after the restart with the identical body
  and gets its original response if it had been committed (idempotent retry);
- at the end both recipients drain their inboxes: every exchange exactly once each
  (one message id after acks), nothing after the acks; the ledger file agrees.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import shutil
import signal
import sqlite3
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.adapters.client import HubClient
from gateway.crypto.keys import OrgKeys
from tests.conftest import BSN, NAME, synthetic_pid
from tests.e2e.hubproc import HubProcess, HubSetup, Processes, create_hub

pytestmark = pytest.mark.e2e

HUB_ORG = "hub-crash"
ZVH = "zvh-crash"
RECIPIENTS = ("ggz-crash", "politie-crash")  # sorted, as the hub lists them
PARTNERS = (
    (ZVH, "zvh", "bestuur"),
    ("politie-crash", "partner", "straf"),
    ("ggz-crash", "partner", "zorg"),
)
CASE_REF = "ZVH-CRASH-0001"
SUBJECT = "S1"
PERSON = {"bsn": BSN, "name": NAME}
DAT_PATH = "/api/v1/dat-requests"
CYCLES = 3
SENDERS = 8
MIN_ACKED_BEFORE_KILL = 10
KILL_WINDOW_S = 0.6
CYCLE_TIMEOUT_S = 20.0


@dataclass
class Burst:
    acked: set[str] = field(default_factory=set)
    inflight: dict[str, bytes] = field(default_factory=dict)  # sent or about to be, no answer
    inflight_at_kill: int = 0


async def dat_body(client: HubClient, exchange_id: str) -> bytes:
    envelopes = [
        await client.seal_to(
            org,
            kind="dat-request",
            exchange_id=exchange_id,
            case_ref=CASE_REF,
            subject_ref=SUBJECT,
            body=PERSON,
        )
        for org in RECIPIENTS
    ]
    body = {"case_ref": CASE_REF, "subject_ref": SUBJECT, "envelopes": envelopes}
    return json.dumps(body, separators=(",", ":")).encode()


async def post_dat(
    client: HubClient, session: aiohttp.ClientSession, raw: bytes
) -> tuple[int, dict[str, Any]]:
    """POST a prepared body (freshly signed), so that a retry can repeat it byte for byte."""
    headers = client.signed_headers("POST", DAT_PATH, "", raw)
    async with session.post(client.base_url + DAT_PATH, data=raw, headers=headers) as resp:
        data: dict[str, Any] = await resp.json(content_type=None)
        return resp.status, data


def check_response(status: int, data: dict[str, Any], exchange_id: str) -> None:
    assert status == 202, (status, data)
    assert data["exchange_id"] == exchange_id
    assert data["delivered"] == list(RECIPIENTS)
    assert data["denied"] == []


async def burst_and_kill(
    setup: HubSetup, hub: HubProcess, keys: OrgKeys, rng: random.Random
) -> Burst:
    state = Burst()
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        HubClient(setup.url, keys, session=session) as client,
    ):
        await client.directory()

        async def sender() -> None:
            while not stop.is_set():
                xid = str(uuid.uuid4())
                raw = await dat_body(client, xid)
                state.inflight[xid] = raw
                try:
                    status, data = await post_dat(client, session, raw)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    return  # the hub is gone; this request stays "in flight"
                check_response(status, data, xid)
                del state.inflight[xid]
                state.acked.add(xid)

        tasks = [asyncio.create_task(sender()) for _ in range(SENDERS)]
        try:
            t0 = time.monotonic()
            while len(state.acked) < MIN_ACKED_BEFORE_KILL:
                assert time.monotonic() - t0 < CYCLE_TIMEOUT_S, "the burst does not get going"
                assert not any(t.done() for t in tasks), [t.result() for t in tasks if t.done()]
                await asyncio.sleep(0.01)
            await asyncio.sleep(rng.uniform(0.0, KILL_WINDOW_S))
            state.inflight_at_kill = len(state.inflight)
            hub.kill()
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), CYCLE_TIMEOUT_S)
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return state


def check_consistent(db: sqlite3.Connection) -> tuple[dict[str, int], int]:
    """The invariants of a hub database after any crash.

    Returns exchange_id -> index of its dat-request entry, and the ledger's size."""
    rows = db.execute("SELECT idx, type, leaf_data, leaf_hash, body FROM ledger ORDER BY idx")
    ledger = rows.fetchall()
    assert [r[0] for r in ledger] == list(range(len(ledger))), "ledger indexes have a gap"
    dat_entries: dict[str, int] = {}
    for idx, entry_type, leaf_data, leaf_hash, body in ledger:
        leaf = json.loads(leaf_data)
        assert (leaf["index"], leaf["type"]) == (idx, entry_type)
        assert bytes(leaf_hash) == hashlib.sha256(b"\x00" + bytes(leaf_data)).digest()
        assert body is not None
        if entry_type == "dat-request":
            b = json.loads(body)
            assert b["exchange_id"] not in dat_entries, f"two entries for {b['exchange_id']}"
            assert (b["case_ref"], b["subject_ref"], b["requester"]) == (CASE_REF, SUBJECT, ZVH)
            assert b["recipients"] == list(RECIPIENTS)
            dat_entries[b["exchange_id"]] = idx
    exchanges = {r[0] for r in db.execute("SELECT exchange_id FROM exchanges WHERE kind = 'dat'")}
    assert exchanges == set(dat_entries), "an exchange without its ledger entry, or vice versa"
    recipients: dict[str, dict[str, str]] = defaultdict(dict)
    rows = db.execute("SELECT exchange_id, org, outcome FROM exchange_recipients")
    for xid, org, outcome in rows:
        recipients[xid][org] = outcome
    assert set(recipients) == exchanges, "an exchange without its recipients, or vice versa"
    complete = dict.fromkeys(RECIPIENTS, "delivered")
    assert all(r == complete for r in recipients.values()), "an exchange missing a recipient"
    messages = Counter(
        (xid, org)
        for xid, org in db.execute("SELECT exchange_id, org FROM inbox WHERE kind = 'dat-request'")
    )
    wanted = {(x, org) for x in exchanges for org in RECIPIENTS}
    assert set(messages) == wanted, "an exchange without its inbox messages, or vice versa"
    assert set(messages.values()) <= {1}, "an exchange queued twice for one recipient"
    return dat_entries, len(ledger)


def crash_snapshot(setup: HubSetup, dest: Path) -> tuple[dict[str, int], int]:
    """Copy the database and its WAL as the kill left them (not the -shm: SQLite rebuilds
    the WAL index from the WAL, as a restart does) and check the copy."""
    dest.mkdir()
    for p in setup.database_files():
        if not p.name.endswith("-shm"):
            shutil.copy2(p, dest / p.name)
    with contextlib.closing(sqlite3.connect(dest / setup.database.name)) as db:
        return check_consistent(db)


async def drain(setup: HubSetup, keys: OrgKeys) -> dict[str, set[int]]:
    """Fetch and ack until the inbox is empty; exchange_id -> the message ids delivered."""
    delivered: dict[str, set[int]] = defaultdict(set)
    async with HubClient(setup.url, keys, timeout_s=30.0) as client:
        while True:
            messages = await client.fetch(wait=0, limit=1000)
            if not messages:
                break
            for m in messages:
                assert (m.kind, m.sender, m.case_ref, m.subject_ref) == (
                    "dat-request",
                    ZVH,
                    CASE_REF,
                    SUBJECT,
                )
                assert m.body == PERSON  # the sealed envelope survived the crashes intact
                assert m.exchange_id is not None
                delivered[m.exchange_id].add(m.message_id)
            ids = [m.message_id for m in messages]
            assert sorted(await client.ack(ids)) == sorted(ids)
        assert await client.fetch(wait=1) == [], "a message came back after its ack"
    return delivered


async def test_kill_9_mid_burst(tmp_path: Path, procs: Processes) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"kill -9 test: seed {seed} (the kill moments)")  # shown when the test fails
    setup = await asyncio.to_thread(create_hub, tmp_path, HUB_ORG, PARTNERS)
    hub = HubProcess(setup, procs)
    await asyncio.to_thread(hub.start)
    keys = {org: OrgKeys.load(path) for org, path in setup.key_files.items()}
    for member_keys in keys.values():
        async with HubClient(setup.url, member_keys) as member:
            await member.accede()
    async with HubClient(setup.url, keys[ZVH]) as zvh:
        await zvh.register_case(
            CASE_REF, "huiselijk-geweld", [(SUBJECT, synthetic_pid())], RECIPIENTS
        )

    acked: set[str] = set()
    report = []
    for cycle in range(CYCLES):
        state = await burst_and_kill(setup, hub, keys[ZVH], rng)
        acked |= state.acked
        present, size = crash_snapshot(setup, tmp_path / f"crash-{cycle}")
        missing = acked - set(present)
        assert not missing, f"seed {seed}: acknowledged but lost in crash {cycle}: {missing}"

        await asyncio.to_thread(hub.start)
        # Retry what was in flight, byte for byte: an exchange the crash had committed
        # answers with its original entry; one it had not is accepted now.
        timeout = aiohttp.ClientTimeout(total=10.0)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            HubClient(setup.url, keys[ZVH], session=session) as client,
        ):
            for xid, raw in state.inflight.items():
                status, data = await post_dat(client, session, raw)
                check_response(status, data, xid)
                index = data["ledger"][0]["index"]
                if xid in present:
                    assert index == present[xid], (xid, data)
                else:
                    assert index >= size, (xid, data)
                acked.add(xid)
        report.append(
            f"cycle {cycle}: {len(state.acked)} acked, {state.inflight_at_kill} in flight at "
            f"the kill, {len(set(state.inflight) & set(present))} of them committed"
        )

    for org in RECIPIENTS:
        delivered = await drain(setup, keys[org])
        assert set(delivered) == acked, f"seed {seed}: {org} got other exchanges than acked"
        twice = {x: ids for x, ids in delivered.items() if len(ids) != 1}
        assert not twice, f"seed {seed}: delivered to {org} more than once: {twice}"

    # SIGINT shuts the hub down gracefully too.
    assert await asyncio.to_thread(hub.stop, signal.SIGINT, 10.0) == 0
    with contextlib.closing(sqlite3.connect(f"file:{setup.database}?mode=ro", uri=True)) as db:
        final, _ = check_consistent(db)
        unacked = db.execute(
            "SELECT COUNT(*) FROM inbox WHERE kind = 'dat-request' AND acked_ms IS NULL"
        ).fetchone()[0]
    assert set(final) == acked
    assert unacked == 0
    print("kill -9 test: " + "; ".join(report))
