"""Jobs on the group-commit writer: the per-batch read cache (shared by the jobs of one
commit, forgotten by every write to what it caches, dropped with a failed job) and
the maintenance prune in chunks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from gateway.storage import stores
from gateway.storage.database import Database, Tx
from gateway.storage.records import CaseRecord, OrgRecord


def _org(org: str) -> OrgRecord:
    return OrgRecord(
        org, "partner", "zorg", org, b"s" * 32, f"{org}-s", b"e" * 32, f"{org}-e", "active",
        None, 0, None,
    )  # fmt: skip


def _case(tx: Tx, case_ref: str, participants: list[str]) -> None:
    stores.insert_case(
        tx,
        case_ref=case_ref,
        theme="huiselijk-geweld",
        registered_by="org-a",
        now_ms=1,
        subjects=[("S1", "p" * 64)],
        participants=participants,
    )


def _read(case_ref: str) -> Callable[[Tx], CaseRecord | None]:
    return lambda tx: stores.get_case(tx, case_ref)


async def _open(tmp_path: Path) -> Database:
    db = Database(tmp_path / "db.sqlite3")
    await db.open()

    def orgs(tx: Tx) -> None:
        for org in ("org-a", "org-b", "org-c"):
            stores.upsert_org(tx, _org(org))

    await db.write("orgs", orgs)
    return db


async def test_a_write_in_the_batch_is_seen_by_the_jobs_after_it(tmp_path: Path) -> None:
    db = await _open(tmp_path)
    try:
        await db.write("case", lambda tx: _case(tx, "C-1", ["org-a"]))

        def twice(tx: Tx) -> bool:
            return stores.get_case(tx, "C-1") is stores.get_case(tx, "C-1")

        before, same, _, after = await asyncio.gather(
            db.write("read", _read("C-1")),
            db.write("twice", twice),
            db.write("add", lambda tx: stores.add_participants(tx, "C-1", ["org-b"], 2)),
            db.write("read", _read("C-1")),
        )
    finally:
        await db.close()
    assert before is not None
    assert after is not None
    assert same  # read once, then from the cache
    assert before.participants == {"org-a"}
    assert after.participants == {"org-a", "org-b"}


async def test_a_failed_job_takes_its_cached_reads_with_it(tmp_path: Path) -> None:
    db = await _open(tmp_path)

    def doomed(tx: Tx) -> None:
        _case(tx, "C-2", ["org-c"])
        assert stores.get_case(tx, "C-2") is not None  # now cached
        raise ValueError("boom")

    try:
        results = await asyncio.gather(
            db.write("doomed", doomed),
            db.write("read", _read("C-2")),
            return_exceptions=True,
        )
        later = await db.read("read", _read("C-2"))
    finally:
        await db.close()
    assert isinstance(results[0], ValueError)
    assert results[1] is None  # rolled back, and not served from the cache
    assert later is None


async def test_prune_deletes_in_chunks_and_keeps_what_is_live(tmp_path: Path) -> None:
    db = await _open(tmp_path)
    total = stores.PRUNE_CHUNK + 500

    def seed(tx: Tx) -> None:
        for i in range(total):
            stores.insert_nonce(tx, "org-a/k", f"old-{i}", 1_000)
        stores.insert_nonce(tx, "org-a/k", "live", 9_000)
        ids = [
            stores.enqueue(
                tx,
                org="org-b",
                kind="dat-request",
                exchange_id=None,
                sender="org-a",
                case_ref="",
                subject_ref="",
                decision=None,
                reason_code=None,
                envelope="{}",
                now_ms=1,
            )
            for _ in range(total + 2)
        ]
        stores.ack_messages(tx, "org-b", ids[:total], 1_000)  # old acks
        stores.ack_messages(tx, "org-b", ids[total : total + 1], 8_000)  # a recent ack
        # ids[-1] stays unacknowledged

    def prune(tx: Tx) -> int:
        return stores.prune(tx, now_ms=5_000, acked_before_ms=5_000)

    def left(tx: Tx) -> tuple[int, int]:
        nonces = tx.conn.execute("SELECT COUNT(*) FROM nonces").fetchone()[0]
        inbox = tx.conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        return int(nonces), int(inbox)

    try:
        await db.write("seed", seed)
        counts = [await db.write("prune", prune) for _ in range(3)]
        remaining = await db.read("left", left)
    finally:
        await db.close()
    assert counts == [stores.PRUNE_CHUNK, 500, 0]
    assert remaining == (1, 2)  # the live nonce; the recent ack and the unacked message
