"""The hub's ledger endpoints (PROTOCOL §5) over real HTTP, and `zvh-gateway ledger prove`.

Everything a client receives is checked the way an outsider would: checkpoints with
the hub key from the hub's directory, proofs against roots recomputed independently
from the leaf hashes in the database file (and against the signed root), entries
against their commitments.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.adapters.client import HubError
from gateway.cli import main
from gateway.clock import FrozenClock, SystemClock
from gateway.crypto.canonical import canonical_json
from gateway.crypto.encoding import b64_decode, b64u_decode, b64u_encode
from gateway.crypto.keys import OrgKeys
from gateway.errors import InvalidRequest
from gateway.ledger.checkpoint import key_hash, parse_checkpoint, verify_checkpoint
from gateway.ledger.leaf import parse_leaf_data
from gateway.ledger.merkle import EMPTY_ROOT, root_of, verify_consistency, verify_inclusion
from gateway.services import admin
from gateway.services.ledger import LedgerService
from gateway.storage.database import Database
from tests.conftest import HUB_ORG, Network, synthetic_pid
from tests.ledger.support import (
    ORIGIN,
    SUBJECT,
    THEME,
    actors_of,
    exchange_case,
    fetch_checkpoint,
    hub_signing_key,
    ledger_rows,
    public_get,
    running_hub,
    settle_warmup,
    wait_for_checkpoint,
)

PROBLEM = "application/problem+json"
ORGS = ("zvh-test", "politie-test", "vt-test", "ggz-test")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Network]:
    """A hub with a small ledger: its set-up entries and one case's exchange, all signed."""
    async with running_hub(tmp_path, checkpoint_interval_s=0.2) as net:
        await exchange_case(net, "C-1")
        key = await hub_signing_key(net)
        await wait_for_checkpoint(net, key, len(ledger_rows(net.settings.node.database)))
        yield net


async def cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


# -- the checkpoint ---------------------------------------------------------------------------


async def test_an_empty_ledger_has_a_signed_size_zero_checkpoint(tmp_path: Path) -> None:
    keys = OrgKeys.generate(HUB_ORG)
    db = Database(tmp_path / "hub.sqlite3")
    await db.open()
    try:
        ledger = LedgerService(db, keys, FrozenClock(1_800_000_000_000))
        await ledger.start()
        await settle_warmup()
        head = ledger.head
        assert head is not None
        cp = verify_checkpoint(head.note, ORIGIN, keys.signing_key)
        assert (cp.size, cp.root, cp.time_ms) == (
            0,
            hashlib.sha256(b"").digest(),
            1_800_000_000_000,
        )
        assert cp.root == EMPTY_ROOT
        assert head.note.startswith(f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
        # Stored, so that a verifier sees it too; no proof exists in an empty tree.
        stored = await db.read(
            "cps", lambda tx: tx.conn.execute("SELECT size, note FROM checkpoints").fetchall()
        )
        assert [(int(s), str(n)) for s, n in stored] == [(0, head.note)]
        with pytest.raises(InvalidRequest):
            await ledger.inclusion(0, 0)
        assert (await ledger.consistency(0, 0))["path"] == []
    finally:
        await db.close()


async def test_the_checkpoint_is_public_plain_text_signed_by_the_directory_key(
    small: Network,
) -> None:
    reply = await public_get(small.url, "/api/v1/ledger/checkpoint")
    assert reply.status == 200
    assert (reply.content_type, reply.charset) == ("text/plain", "utf-8")
    assert reply.headers.get("Cache-Control") == "no-store"
    key = await hub_signing_key(small)
    assert key == small.hub.keys.signing_key
    cp = verify_checkpoint(reply.text, ORIGIN, key)
    rows = ledger_rows(small.settings.node.database)
    assert cp.size == len(rows)
    assert cp.root == root_of([r[3] for r in rows])
    assert abs(cp.time_ms - SystemClock().now_ms()) < 60_000
    # The signature line: "— <origin> b64(key hash || Ed25519 signature)".
    parsed, signatures = parse_checkpoint(reply.text)
    assert parsed == cp
    [(name, blob)] = signatures
    assert name == ORIGIN
    assert blob[:4] == key_hash(ORIGIN, key)
    assert len(blob) == 4 + 64
    assert reply.text.split("\n")[:3] == [ORIGIN, str(cp.size), reply.text.split("\n")[2]]
    assert b64_decode(reply.text.split("\n")[2]) == cp.root
    # Another key does not verify it.
    with pytest.raises(ValueError, match="no signature by the expected key"):
        verify_checkpoint(reply.text, ORIGIN, OrgKeys.generate(HUB_ORG).signing_key)


# -- proofs -----------------------------------------------------------------------------------


async def test_every_inclusion_and_consistency_proof_verifies(
    small: Network, http: aiohttp.ClientSession
) -> None:
    key = await hub_signing_key(small)
    signed, _ = await fetch_checkpoint(small, key)
    hashes = [r[3] for r in ledger_rows(small.settings.node.database)]
    size = signed.size
    assert size == len(hashes) >= 10
    roots = [root_of(hashes[:n]) for n in range(size + 1)]
    assert roots[size] == signed.root

    async def get(path: str, **params: int) -> dict[str, Any]:
        reply = await public_get(
            small.url, path, {k: str(v) for k, v in params.items()}, session=http
        )
        assert reply.status == 200, reply.text
        assert reply.content_type == "application/json"
        data = json.loads(reply.text)
        assert isinstance(data, dict)
        return data

    for n in range(1, size + 1):
        for i in range(n):
            proof = await get("/api/v1/ledger/proofs/inclusion", index=i, size=n)
            assert set(proof) == {"index", "size", "leaf_hash", "path"}
            assert (proof["index"], proof["size"]) == (i, n)
            assert proof["leaf_hash"] == hashes[i].hex()
            path = [bytes.fromhex(p) for p in proof["path"]]
            assert verify_inclusion(i, n, hashes[i], path, roots[n]), (i, n)
            # Not for another index or a tampered path.
            assert not verify_inclusion(i, n, hashes[i - 1] if i else hashes[-1], path, roots[n])
    for second in range(size + 1):
        for first in range(second + 1):
            proof = await get("/api/v1/ledger/proofs/consistency", first=first, second=second)
            assert set(proof) == {"first", "second", "path"}
            assert (proof["first"], proof["second"]) == (first, second)
            path = [bytes.fromhex(p) for p in proof["path"]]
            assert verify_consistency(first, second, roots[first], roots[second], path)
            if 0 < first < second:
                assert not verify_consistency(first, second, roots[first - 1], roots[second], path)


BAD_QUERIES = (
    "inclusion?index=3&size=3",  # index must be below size
    "inclusion?index=0&size=0",
    "inclusion?index=0&size=BEYOND",  # more than the hub has signed
    "inclusion?index=BEYOND&size=BEYOND",
    "inclusion?index=-1&size=2",
    "inclusion?index=1.0&size=2",
    "inclusion?index=x&size=2",
    "inclusion?index=%201&size=2",
    "inclusion?index=0",
    "inclusion?size=2",
    "inclusion?index=0&size=4611686018427387904",  # 2^62
    "consistency?first=3&second=2",
    "consistency?first=0&second=BEYOND",
    "consistency?first=BEYOND&second=BEYOND",
    "consistency?first=-1&second=2",
    "consistency?first=1",
    "consistency?second=1",
)


async def test_out_of_range_proof_queries_are_400(
    small: Network, http: aiohttp.ClientSession
) -> None:
    beyond = str(len(ledger_rows(small.settings.node.database)) + 1)
    for query in BAD_QUERIES:
        target = "/api/v1/ledger/proofs/" + query.replace("BEYOND", beyond)
        async with http.get(small.url + target) as resp:
            assert resp.status == 400, (target, await resp.text())
            assert resp.content_type == PROBLEM, target
            body = await resp.json(content_type=PROBLEM)
        assert body["code"] == "invalid-request", (target, body)
    # The edges that are in range do answer.
    for query in (
        f"inclusion?index={int(beyond) - 2}&size={int(beyond) - 1}",
        f"consistency?first=0&second={int(beyond) - 1}",
    ):
        async with http.get(small.url + "/api/v1/ledger/proofs/" + query) as resp:
            assert resp.status == 200, query


# -- entries ----------------------------------------------------------------------------------


async def test_entries_show_body_and_salt_only_to_their_actors(small: Network) -> None:
    database = small.settings.node.database
    rows = ledger_rows(database)
    actors = actors_of(database)
    shown: dict[str, int] = dict.fromkeys(ORGS, 0)
    hidden: dict[str, int] = dict.fromkeys(ORGS, 0)
    for org in ORGS:
        client = small.client(org)
        for index, _, data, _, body, salt in rows:
            entry = await client.call("GET", f"/api/v1/ledger/entries/{index}")
            assert set(entry) == {"index", "leaf_data", "body", "salt"}
            assert entry["index"] == index
            assert b64u_decode(entry["leaf_data"]) == data
            if org in actors.get(index, set()):
                assert body is not None
                assert salt is not None
                assert entry["body"] == json.loads(body)
                assert entry["salt"] == salt.hex()
                # What the actor got opens the commitment in the leaf.
                opened = hashlib.sha256(
                    bytes.fromhex(entry["salt"]) + canonical_json(entry["body"])
                )
                assert opened.hexdigest() == parse_leaf_data(data).commitment
                shown[org] += 1
            else:
                assert (entry["body"], entry["salt"]) == (None, None)
                hidden[org] += 1
    assert all(shown.values())
    assert all(hidden.values())
    with pytest.raises(HubError) as missing:
        await small.client("zvh-test").call("GET", f"/api/v1/ledger/entries/{len(rows)}")
    assert missing.value.status == 404
    with pytest.raises(HubError) as bad:
        await small.client("zvh-test").call("GET", "/api/v1/ledger/entries/x1")
    assert bad.value.status == 400


@pytest.mark.parametrize("who", ["unsigned", "outsider"])
async def test_entries_need_a_signed_request_from_a_member(small: Network, who: str) -> None:
    if who == "outsider":
        with pytest.raises(HubError) as refused:
            await small.client("outsider").call("GET", "/api/v1/ledger/entries/0")
        assert refused.value.status == 401
        return
    reply = await public_get(small.url, "/api/v1/ledger/entries/0")
    assert reply.status == 401, reply.text
    assert reply.content_type == PROBLEM
    assert "leaf_data" not in reply.text


# -- `zvh-gateway ledger prove` ---------------------------------------------------------------


async def test_ledger_prove_against_a_running_hub(
    small: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    key = await hub_signing_key(small)
    cp, _ = await fetch_checkpoint(small, key)
    rows = ledger_rows(small.settings.node.database)
    index = len(rows) - 2
    leaf = rows[index][3].hex()
    good = f"--hub-key={b64u_encode(key)}"  # b64u may start with "-": keep it in one argument
    base = ("ledger", "prove", "--url", small.url, "--index", str(index))

    capsys.readouterr()
    assert await cli(*base, good) == 0
    out = capsys.readouterr().out
    assert out.strip() == (
        f"entry {index} (leaf {leaf}) is in the ledger of {ORIGIN}, "
        f"signed size {cp.size}, root {cp.root.hex()}"
    )
    assert await cli(*base, good, f"--leaf-hash={leaf.upper()}") == 0
    capsys.readouterr()

    other = f"--hub-key={b64u_encode(OrgKeys.generate(HUB_ORG).signing_key)}"
    assert await cli(*base, other) == 1
    assert capsys.readouterr().out.startswith("NOT proven: checkpoint: no signature")

    wrong_leaf = rows[index - 1][3].hex()
    assert await cli(*base, good, f"--leaf-hash={wrong_leaf}") == 1
    assert "the hub proved a different leaf" in capsys.readouterr().out

    beyond = ("ledger", "prove", "--url", small.url, "--index", str(cp.size + 5), good)
    assert await cli(*beyond) == 1
    assert "not yet covered" in capsys.readouterr().out

    assert await cli(*base, "--hub-key=not a key") == 2


# -- signing cadence --------------------------------------------------------------------------


async def test_appends_are_signed_within_the_configured_interval(tmp_path: Path) -> None:
    interval = 0.5
    async with running_hub(tmp_path, checkpoint_interval_s=interval) as net:
        key = await hub_signing_key(net)
        zvh = net.client("zvh-test")
        previous, _, _ = await wait_for_checkpoint(
            net, key, len(ledger_rows(net.settings.node.database))
        )
        for n, pause in enumerate((0.05, 0.3, 0.45, 0.7)):  # appends at several phases
            await asyncio.sleep(pause)
            started = time.monotonic()
            done = await zvh.register_case(
                f"C-{n}", THEME, [(SUBJECT, synthetic_pid())], ["vt-test"]
            )
            [ref] = done["ledger"]
            cp, _, _ = await wait_for_checkpoint(net, key, ref["index"] + 1, timeout_s=10)
            elapsed = time.monotonic() - started
            assert elapsed <= interval + 0.75, f"covered after {elapsed:.2f} s"
            assert cp.time_ms >= previous.time_ms
            assert cp.size > previous.size
            previous = cp


async def test_an_idle_hub_re_signs_within_idle_s(tmp_path: Path) -> None:
    idle = 0.6
    async with running_hub(tmp_path, checkpoint_interval_s=0.4, checkpoint_idle_s=idle) as net:
        key = await hub_signing_key(net)
        times: list[int] = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            cp, _ = await fetch_checkpoint(net, key)
            if not times or cp.time_ms != times[-1]:
                times.append(cp.time_ms)
            await asyncio.sleep(0.02)
    gaps = [b - a for a, b in itertools.pairwise(times[1:])]  # times[0]: when we came in
    assert len(gaps) >= 2, times
    assert max(gaps) <= idle * 1000 + 150, gaps


async def test_an_offline_append_is_signed_within_the_interval(tmp_path: Path) -> None:
    interval = 0.3
    async with running_hub(tmp_path, checkpoint_interval_s=interval) as net:
        key = await hub_signing_key(net)
        database = net.settings.node.database
        await wait_for_checkpoint(net, key, len(ledger_rows(database)))
        assert await asyncio.to_thread(
            admin.revoke_partner, net.settings, SystemClock(), "woon-test"
        )
        size = len(ledger_rows(database))
        await wait_for_checkpoint(net, key, size, timeout_s=interval + 2.0)
