"""Retention purge through a real hub: proofs survive, the purged bytes do not.

A case goes through the hub (registration, a dat-request, two answers, closure) while
the hub signs checkpoints; every checkpoint and every inclusion and consistency proof
is fetched from the public endpoints. Then retention (0 days) purges the closed case,
by the hub's own scheduled job (`purge_now`) or by the offline CLI beside the running
hub. Afterwards: the same proofs for the old sizes are served again and verify
against the old signed roots, the new checkpoint is consistent with every old one,
`ledger verify` passes, the `purge` entry names exactly the purged indexes, and no
database file (main, -wal, -shm) contains a purged body's stored bytes or its salt.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import RetentionSettings
from gateway.crypto.encoding import b64u_decode, b64u_encode
from gateway.ledger.checkpoint import Checkpoint
from gateway.ledger.leaf import leaf_hash
from gateway.ledger.merkle import verify_consistency, verify_inclusion
from gateway.web.hub_app import purge_now
from tests.conftest import HUB_ORG, Network
from tests.ledger.support import (
    actors_of,
    exchange_case,
    hub_signing_key,
    ledger_rows,
    public_get,
    running_hub,
    wait_for_checkpoint,
)

ZERO_DAYS = RetentionSettings(entry_days=0, case_data_days=0)
TABLES: tuple[str, ...] = ("ledger", "ledger_actors", "ledger_cases", "checkpoints", "cases")
TABLES += ("case_subjects", "exchanges", "exchange_recipients", "inbox")


async def get_json(net: Network, path: str, **params: int) -> dict[str, Any]:
    reply = await public_get(net.url, path, {k: str(v) for k, v in params.items()})
    assert reply.status == 200, reply.text
    data = json.loads(reply.text)
    assert isinstance(data, dict)
    return data


def inclusion_ok(proof: dict[str, Any], cp: Checkpoint) -> bool:
    return verify_inclusion(
        int(proof["index"]),
        cp.size,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(p) for p in proof["path"]],
        cp.root,
    )


def consistency_ok(proof: dict[str, Any], old: Checkpoint, new: Checkpoint) -> bool:
    return verify_consistency(
        old.size, new.size, old.root, new.root, [bytes.fromhex(p) for p in proof["path"]]
    )


def snapshot(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a purge touches (the dry run must change none)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    finally:
        conn.close()


def file_images(database: Path) -> dict[str, bytes]:
    """The raw bytes of the database and its -wal and -shm files, as they are on disk."""
    return {p.name: p.read_bytes() for p in sorted(database.parent.glob(database.name + "*"))}


def retention_config(net: Network) -> Path:
    """A copy of the hub's config with retention set to 0 days (for `ledger purge`)."""
    source = net.settings.source
    assert source is not None
    text = source.read_text(encoding="utf-8")
    for key in ("entry_days", "case_data_days"):
        assert f"\n{key} = " in text
        text = "\n".join(
            f"{key} = 0" if line.startswith(f"{key} = ") else line for line in text.split("\n")
        )
    config = source.with_name("purge.toml")
    config.write_text(text, encoding="utf-8")
    return config


async def cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


async def record(net: Network, key: bytes, seen: list[Checkpoint]) -> Checkpoint:
    size = len(ledger_rows(net.settings.node.database))
    cp, _, _ = await wait_for_checkpoint(net, key, size)
    assert cp.size == size
    seen.append(cp)
    return cp


@pytest.mark.parametrize("how", ["hub", "cli"])
async def test_purge_keeps_every_proof_and_leaves_no_trace(
    tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_hub(tmp_path, checkpoint_interval_s=0.2, checkpoint_idle_s=1.0) as net:
        database = net.settings.node.database
        key = await hub_signing_key(net)
        checkpoints: list[Checkpoint] = []
        await record(net, key, checkpoints)
        closed = await exchange_case(net, "C-1")
        await record(net, key, checkpoints)
        still_open = await exchange_case(net, "C-2", close=False)
        await record(net, key, checkpoints)
        assert len({cp.size for cp in checkpoints}) == 3

        # Everything public before the purge.
        inclusion = {
            (i, cp.size): await get_json(
                net, "/api/v1/ledger/proofs/inclusion", index=i, size=cp.size
            )
            for cp in checkpoints
            for i in range(cp.size)
        }
        for (_, size), proof in inclusion.items():
            assert inclusion_ok(proof, next(c for c in checkpoints if c.size == size))
        rows = ledger_rows(database)
        targets = [
            r for r in rows if r[4] is not None and json.loads(r[4]).get("case_ref") == "C-1"
        ]
        assert [r[0] for r in targets] == sorted(closed)
        assert not set(still_open) & {r[0] for r in targets}
        images = b"".join(file_images(database).values())
        for row in targets:  # the control: the bytes to look for are there now
            assert row[4] is not None
            assert row[5] is not None
            assert row[4] in images
            assert row[5] in images

        # A dry run reports and changes nothing.
        config = retention_config(net)
        before = snapshot(database)
        capsys.readouterr()
        assert await cli("ledger", "purge", "--config", str(config), "--dry-run") == 0
        out = capsys.readouterr().out
        assert out.strip() == f"would purge {len(targets)} ledger bodies and the data of 1 cases"
        assert snapshot(database) == before

        # The purge.
        if how == "hub":
            net.hub.settings = net.settings.model_copy(update={"retention": ZERO_DAYS})
            done = await purge_now(net.hub)
            assert done.entries == tuple(r[0] for r in targets)
            assert done.cases == ("C-1",)
        else:
            assert await cli("ledger", "purge", "--config", str(config)) == 0
            out = capsys.readouterr().out
            assert out.strip() == f"purged {len(targets)} ledger bodies and the data of 1 cases"
        after_rows = ledger_rows(database)
        assert len(after_rows) == len(rows) + 1
        purged = {r[0] for r in targets}
        for was, now in zip(rows, after_rows, strict=False):
            assert now[:4] == was[:4]  # index, type, leaf data and leaf hash never change
            assert now[4:] == ((None, None) if was[0] in purged else was[4:])
        purge = after_rows[-1]
        assert purge[1] == "purge"
        assert purge[4] is not None
        body = json.loads(purge[4])
        assert body["indexes"] == [r[0] for r in targets]
        assert (body["by"], body["cases_purged"], body["reason"]) == (HUB_ORG, 1, "retention")

        # The hub signs over the purge entry; every old checkpoint and proof still holds.
        latest = await record(net, key, checkpoints)
        assert latest.size == len(after_rows)
        for old in checkpoints[:-1]:
            proof = await get_json(
                net, "/api/v1/ledger/proofs/consistency", first=old.size, second=latest.size
            )
            assert consistency_ok(proof, old, latest), old
        for (i, size), proof in inclusion.items():
            again = await get_json(net, "/api/v1/ledger/proofs/inclusion", index=i, size=size)
            assert again == proof
        for i in sorted(purged):
            proof = await get_json(
                net, "/api/v1/ledger/proofs/inclusion", index=i, size=latest.size
            )
            assert inclusion_ok(proof, latest)
            assert bytes.fromhex(proof["leaf_hash"]) == leaf_hash(rows[i][2])
        # Even an actor of a purged entry gets only its leaf data now.
        actors = actors_of(database)
        mine = min(i for i in purged if "politie-test" in actors.get(i, set()))
        entry = await net.client("politie-test").call("GET", f"/api/v1/ledger/entries/{mine}")
        assert (entry["body"], entry["salt"]) == (None, None)
        assert b64u_decode(entry["leaf_data"]) == rows[mine][2]

        # The auditor's view of the file.
        capsys.readouterr()
        args = ("ledger", "verify", "--db", str(database), f"--hub-key={b64u_encode(key)}")
        assert await cli(*args) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"ledger OK: {len(after_rows)} entries"), out
        assert f" {len(purged)} purged" in out

        # Not a byte of a purged body or salt is left in any of the files.
        for name, image in file_images(database).items():
            for row in targets:
                assert row[4] is not None
                assert row[5] is not None
                assert row[4] not in image, f"entry {row[0]}'s body is still in {name}"
                assert row[5] not in image, f"entry {row[0]}'s salt is still in {name}"


@pytest.mark.slow
async def test_purge_leaves_no_trace_while_an_auditor_reads(tmp_path: Path) -> None:
    async with running_hub(tmp_path, checkpoint_interval_s=0.2) as net:
        database = net.settings.node.database
        await exchange_case(net, "C-1")
        targets = [
            r for r in ledger_rows(database) if r[4] is not None and b'"case_ref":"C-1"' in r[4]
        ]
        assert targets
        # An auditor's read transaction on the live file, open across the purge.
        reading = threading.Event()
        release = threading.Event()

        def auditor() -> None:
            conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT COUNT(*) FROM ledger").fetchone()
                reading.set()
                release.wait(30)
                conn.execute("COMMIT")
            finally:
                conn.close()

        reader = threading.Thread(target=auditor)
        reader.start()
        try:
            assert await asyncio.to_thread(reading.wait, 10)
            net.hub.settings = net.settings.model_copy(update={"retention": ZERO_DAYS})
            done = await purge_now(net.hub)
            assert done.entries == tuple(r[0] for r in targets)
            images = file_images(database)
        finally:
            release.set()
            await asyncio.to_thread(reader.join, 30)
        for name, image in images.items():
            for row in targets:
                assert row[4] is not None
                assert row[4] not in image, f"entry {row[0]}'s body is still in {name}"
