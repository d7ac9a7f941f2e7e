"""The group-commit writer, savepoint isolation, the ledger triggers and leaf data."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.crypto.canonical import canonical_json
from gateway.crypto.encoding import sha256
from gateway.ledger.leaf import leaf_hash, parse_leaf_data
from gateway.storage.database import Database, StorageError, Tx
from gateway.storage.offline import offline_transaction


class Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.names: list[tuple[str, bool]] = []

    def observe_transaction(self, name: str, seconds: float, ok: bool) -> None:
        self.names.append((name, ok))

    def observe_batch(self, jobs: int, seconds: float) -> None:
        self.batches.append(jobs)

    def observe_job(self, name: str, seconds: float) -> None:
        assert seconds >= 0

    def observe_commit(self, seconds: float) -> None:
        assert seconds >= 0


def _append(n: int) -> Callable[[Tx], int]:
    def job(tx: Tx) -> int:
        return tx.append_ledger("test", 1000 + n, {"n": n}, ("org-a",)).index

    return job


async def test_concurrent_appends_share_commits_and_stay_gap_free(tmp_path: Path) -> None:
    rec = Recorder()
    db = Database(tmp_path / "db.sqlite3", observer=rec)
    await db.open()
    try:
        indexes = await asyncio.gather(*(db.write("append", _append(i)) for i in range(200)))
    finally:
        await db.close()
    assert sorted(indexes) == list(range(200))
    assert len(rec.batches) < 200  # group commit: fewer transactions than jobs
    assert sum(rec.batches) == 200
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    rows = conn.execute(
        "SELECT idx, leaf_data, leaf_hash, body, salt FROM ledger ORDER BY idx"
    ).fetchall()
    assert [r[0] for r in rows] == list(range(200))
    for idx, data, digest, body, salt in rows:
        leaf = parse_leaf_data(bytes(data))
        assert leaf.index == idx
        assert bytes(digest) == leaf_hash(bytes(data))
        # The stored body is exactly what the commitment covers.
        assert sha256(bytes(salt) + bytes(body)).hex() == leaf.commitment
        assert canonical_json(json.loads(body)) == bytes(body)


async def test_a_failing_job_rolls_back_alone(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    await db.open()

    def bad(tx: Tx) -> None:
        tx.append_ledger("test", 1, {"n": "bad"}, ())
        raise ValueError("boom")

    try:
        results = await asyncio.gather(
            db.write("ok", _append(1)),
            db.write("bad", bad),
            db.write("ok", _append(2)),
            return_exceptions=True,
        )
    finally:
        await db.close()
    assert results[0] == 0
    assert isinstance(results[1], ValueError)
    assert results[2] == 1  # the failed job's index was given back
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 2


async def test_ledger_rows_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    await db.open()
    await db.write("append", _append(0))
    await db.close()
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    for statement in (
        "DELETE FROM ledger WHERE idx = 0",
        "UPDATE ledger SET leaf_data = x'00' WHERE idx = 0",
        "UPDATE ledger SET leaf_hash = x'00' WHERE idx = 0",
        "UPDATE ledger SET type = 'x' WHERE idx = 0",
        "UPDATE ledger SET body = x'7b7d' WHERE idx = 0",
    ):
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(statement)
    # Purge (clearing body and salt) is allowed.
    conn.execute("UPDATE ledger SET body = NULL, salt = NULL WHERE idx = 0")


async def test_offline_appends_interleave_with_the_hub_writer(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = Database(path)
    await db.open()
    try:
        assert await db.write("a", _append(0)) == 0
        with offline_transaction(path) as tx:
            assert tx.append_ledger("cli", 5, {"by": "cli"}, ()).index == 1
        assert await db.write("a", _append(2)) == 2
    finally:
        await db.close()


async def test_write_after_close_fails(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    await db.open()
    await db.close()
    with pytest.raises(StorageError):
        await db.write("a", _append(0))


async def test_reads_do_not_append(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    await db.open()
    try:
        with pytest.raises(StorageError):
            await db.read("r", lambda tx: tx.append_ledger("x", 1, {}, ()))
    finally:
        await db.close()


async def test_bulk_jobs_commit_after_the_interactive_ones_taken_with_them(
    tmp_path: Path,
) -> None:
    """A batch of answers (bulk) never holds up a single request: queued together,
    the interactive jobs commit first, in a transaction of their own."""
    rec = Recorder()
    db = Database(tmp_path / "db.sqlite3", observer=rec)
    await db.open()
    gate = threading.Event()
    try:
        # Hold the writer, so that everything below is queued before it takes a batch.
        held = asyncio.ensure_future(db.write("hold", lambda tx: gate.wait(10)))
        await asyncio.sleep(0.05)
        order: list[str] = []

        def job(name: str) -> Callable[[Tx], int]:
            def run(tx: Tx) -> int:
                tx.on_commit(lambda: order.append(name))
                return tx.append_ledger("test", 1000, {"name": name}, ("org-a",)).index

            return run

        writes = [
            db.write("bulk", job("bulk-1"), bulk=True),
            db.write("single", job("single-1")),
            db.write("bulk", job("bulk-2"), bulk=True),
            db.write("single", job("single-2")),
        ]
        pending = [asyncio.ensure_future(w) for w in writes]
        await asyncio.sleep(0.05)
        gate.set()
        await held
        indexes = await asyncio.gather(*pending)
    finally:
        gate.set()
        await db.close()
    assert order == ["single-1", "single-2", "bulk-1", "bulk-2"]
    assert indexes == [2, 0, 3, 1]  # the ledger is in commit order
    assert rec.batches[-2:] == [2, 2]  # two transactions
