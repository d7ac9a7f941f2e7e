"""The adapter's own durable state (issue 8), in its own SQLite file.

A partner's adapter must lose nothing and do nothing twice across restarts: this
module keeps the local API's idempotency keys (with the sealed hub call made for
each, so a retry sends the same bytes), every inbox item from the moment it is
fetched until the partner system has taken it, the attempts made, and the dead
letters. Inbox items are stored as fetched, envelopes still sealed; the stored
ciphertext is dropped once the item is delivered.

The adapter's load is a few requests a second at most, so there is no group commit
here: one connection, every write its own short transaction (`synchronous=FULL`),
all of it on aiosqlite's thread, never on the event loop. The offline tools (the
`dead-letters` CLI) write through `offline_*`, safe while the adapter runs: SQLite's
write lock serialises them, and the running adapter reads due items from the table.

Must not: decide anything (when to retry, what counts as accepted: that is
`gateway.adapters.delivery`), or hold plaintext of an envelope.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from gateway.storage.database import StorageError, _on_thread, migrate

T = TypeVar("T")
MIGRATIONS = "adapter_migrations"
DeliveryState = Literal["pending", "delivered", "dead"]


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    operation: str
    request_sha256: str
    state: Literal["started", "done"]
    hub_request: dict[str, Any] | None
    status: int | None
    response: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: int
    kind: str
    exchange_id: str | None
    sender: str
    case_ref: str
    subject_ref: str
    message: dict[str, Any] | None
    state: DeliveryState
    attempts: int
    next_attempt_ms: int
    last_error: str | None
    reply: dict[str, Any] | None
    reply_sent: bool
    hub_acked: bool
    received_ms: int
    delivered_ms: int | None
    dead_ms: int | None

    def summary(self) -> dict[str, Any]:
        """What `dead-letters list` shows: metadata only, never the envelope."""
        return {
            "message_id": self.message_id,
            "kind": self.kind,
            "exchange_id": self.exchange_id,
            "from": self.sender,
            "case_ref": self.case_ref,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "received_ms": self.received_ms,
            "dead_ms": self.dead_ms,
        }


def _loads(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


def _dumps(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_DELIVERY_COLUMNS = (
    "message_id, kind, exchange_id, sender, case_ref, subject_ref, message, state, attempts, "
    "next_attempt_ms, last_error, reply, reply_sent, hub_acked, received_ms, delivered_ms, dead_ms"
)


def _delivery(row: sqlite3.Row | tuple[Any, ...]) -> Delivery:
    return Delivery(
        message_id=int(row[0]),
        kind=str(row[1]),
        exchange_id=row[2],
        sender=str(row[3]),
        case_ref=str(row[4]),
        subject_ref=str(row[5]),
        message=_loads(row[6]),
        state=row[7],
        attempts=int(row[8]),
        next_attempt_ms=int(row[9]),
        last_error=row[10],
        reply=_loads(row[11]),
        reply_sent=bool(row[12]),
        hub_acked=bool(row[13]),
        received_ms=int(row[14]),
        delivered_ms=row[15],
        dead_ms=row[16],
    )


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # an accepted request survives power loss
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA secure_delete=ON")  # dropped ciphertext does not linger


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


# -- the statements (plain functions of a connection, shared with the offline tools) --


def _get_idempotency(conn: sqlite3.Connection, key: str) -> IdempotencyRecord | None:
    row = conn.execute(
        "SELECT key, operation, request_sha256, state, hub_request, status, response "
        "FROM idempotency WHERE key = ?",
        (key,),
    ).fetchone()
    if row is None:
        return None
    return IdempotencyRecord(row[0], row[1], row[2], row[3], _loads(row[4]), row[5], _loads(row[6]))


def _dead_letters(conn: sqlite3.Connection) -> list[Delivery]:
    rows = conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE state = 'dead' ORDER BY message_id"
    ).fetchall()
    return [_delivery(r) for r in rows]


def _retry_dead(conn: sqlite3.Connection, message_id: int | None, now_ms: int) -> list[int]:
    """Dead letters back to pending, due now, with a fresh attempt budget. A reply that
    never reached the hub is dropped, so the partner system is asked again."""
    where = "state = 'dead'" + ("" if message_id is None else " AND message_id = ?")
    args: tuple[Any, ...] = () if message_id is None else (message_id,)
    ids = [
        int(r[0]) for r in conn.execute(f"SELECT message_id FROM deliveries WHERE {where}", args)
    ]
    for mid in ids:
        conn.execute(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_ms = ?, "
            "dead_ms = NULL, reply = CASE WHEN reply_sent THEN reply ELSE NULL END "
            "WHERE message_id = ?",
            (now_ms, mid),
        )
    return ids


class AdapterStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        await _on_thread(self._conn, _configure, self._conn._conn)
        await _on_thread(self._conn, migrate, self._conn._conn, MIGRATIONS)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StorageError("the adapter database is not open")
        raw = self._conn._conn
        try:
            result: T = await _on_thread(self._conn, _in_transaction, raw, fn)
        except sqlite3.Error as exc:
            raise StorageError("the adapter database write failed") from exc
        return result

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StorageError("the adapter database is not open")
        raw = self._conn._conn
        result: T = await _on_thread(self._conn, fn, raw)
        return result

    # -- idempotency --------------------------------------------------------------

    async def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        return await self._read(lambda c: _get_idempotency(c, key))

    async def claim_idempotency(
        self,
        key: str,
        operation: str,
        request_sha256: str,
        hub_request: dict[str, Any] | None,
        now_ms: int,
    ) -> IdempotencyRecord:
        """Insert a `started` row unless the key exists; return the row that holds the key."""

        def job(c: sqlite3.Connection) -> IdempotencyRecord:
            c.execute(
                "INSERT OR IGNORE INTO idempotency "
                "(key, operation, request_sha256, state, hub_request, created_ms) "
                "VALUES (?, ?, ?, 'started', ?, ?)",
                (key, operation, request_sha256, _dumps(hub_request), now_ms),
            )
            record = _get_idempotency(c, key)
            assert record is not None
            return record

        return await self._write(job)

    async def finish_idempotency(
        self, key: str, status: int, response: dict[str, Any], now_ms: int
    ) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE idempotency SET state = 'done', status = ?, response = ?, done_ms = ? "
                "WHERE key = ?",
                (status, _dumps(response), now_ms, key),
            )
        )

    async def release_idempotency(self, key: str) -> None:
        """Forget a `started` key whose call never left the adapter (nothing to repeat)."""
        await self._write(
            lambda c: c.execute(
                "DELETE FROM idempotency WHERE key = ? AND state = 'started'", (key,)
            )
        )

    # -- inbox items --------------------------------------------------------------

    async def receive(self, message: dict[str, Any], now_ms: int) -> tuple[Delivery, bool]:
        """Store a fetched inbox item (pending, due now) unless it is known; return the
        stored row and whether it is new."""
        mid = int(message["message_id"])

        def job(c: sqlite3.Connection) -> tuple[Delivery, bool]:
            cur = c.execute(
                "INSERT OR IGNORE INTO deliveries (message_id, kind, exchange_id, sender, "
                "case_ref, subject_ref, message, state, next_attempt_ms, received_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (
                    mid,
                    str(message.get("kind")),
                    message.get("exchange_id"),
                    str(message.get("from")),
                    str(message.get("case_ref", "")),
                    str(message.get("subject_ref", "")),
                    _dumps(dict(message)),
                    now_ms,
                    now_ms,
                ),
            )
            row = c.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE message_id = ?", (mid,)
            ).fetchone()
            return _delivery(row), cur.rowcount == 1

        return await self._write(job)

    async def get(self, message_id: int) -> Delivery | None:
        def job(c: sqlite3.Connection) -> Delivery | None:
            row = c.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE message_id = ?", (message_id,)
            ).fetchone()
            return None if row is None else _delivery(row)

        return await self._read(job)

    async def due(self, now_ms: int, limit: int = 50) -> list[Delivery]:
        def job(c: sqlite3.Connection) -> list[Delivery]:
            rows = c.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE state = 'pending' "
                "AND next_attempt_ms <= ? ORDER BY next_attempt_ms, message_id LIMIT ?",
                (now_ms, limit),
            ).fetchall()
            return [_delivery(r) for r in rows]

        return await self._read(job)

    async def next_due_ms(self) -> int | None:
        def job(c: sqlite3.Connection) -> int | None:
            row = c.execute(
                "SELECT MIN(next_attempt_ms) FROM deliveries WHERE state = 'pending'"
            ).fetchone()
            return None if row is None or row[0] is None else int(row[0])

        return await self._read(job)

    async def request_for_exchange(self, exchange_id: str) -> Delivery | None:
        """The dat- or wat-request that an answer to `exchange_id` answers."""

        def job(c: sqlite3.Connection) -> Delivery | None:
            row = c.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE exchange_id = ? "
                "AND kind IN ('dat-request', 'wat-request') ORDER BY message_id DESC LIMIT 1",
                (exchange_id,),
            ).fetchone()
            return None if row is None else _delivery(row)

        return await self._read(job)

    async def record_attempt(
        self,
        message_id: int,
        attempt: int,
        now_ms: int,
        outcome: Literal["accepted", "failed"],
        detail: str | None,
    ) -> None:
        def job(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR REPLACE INTO delivery_attempts "
                "(message_id, attempt, at_ms, outcome, detail) VALUES (?, ?, ?, ?, ?)",
                (message_id, attempt, now_ms, outcome, detail),
            )
            c.execute(
                "UPDATE deliveries SET attempts = ? WHERE message_id = ?", (attempt, message_id)
            )

        await self._write(job)

    async def schedule_retry(self, message_id: int, next_attempt_ms: int, error: str) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE deliveries SET next_attempt_ms = ?, last_error = ? WHERE message_id = ?",
                (next_attempt_ms, error, message_id),
            )
        )

    async def set_reply(self, message_id: int, reply: dict[str, Any]) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE deliveries SET reply = ? WHERE message_id = ?", (_dumps(reply), message_id)
            )
        )

    async def mark_reply_sent(self, message_id: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE deliveries SET reply_sent = 1 WHERE message_id = ?", (message_id,)
            )
        )

    async def mark_delivered(self, message_id: int, now_ms: int) -> None:
        """Taken by the partner system: the stored ciphertext is no longer needed."""
        await self._write(
            lambda c: c.execute(
                "UPDATE deliveries SET state = 'delivered', delivered_ms = ?, message = NULL, "
                "last_error = NULL WHERE message_id = ?",
                (now_ms, message_id),
            )
        )

    async def mark_dead(self, message_id: int, now_ms: int, error: str) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE deliveries SET state = 'dead', dead_ms = ?, last_error = ? "
                "WHERE message_id = ?",
                (now_ms, error, message_id),
            )
        )

    async def mark_acked(self, message_ids: Sequence[int]) -> None:
        ids = list(message_ids)

        def job(c: sqlite3.Connection) -> None:
            c.executemany(
                "UPDATE deliveries SET hub_acked = 1 WHERE message_id = ?", [(i,) for i in ids]
            )

        await self._write(job)

    async def to_ack(self) -> list[int]:
        """Items the adapter is done with (delivered or held as dead letters) whose hub
        acknowledgement has not been confirmed yet."""

        def job(c: sqlite3.Connection) -> list[int]:
            rows = c.execute(
                "SELECT message_id FROM deliveries WHERE hub_acked = 0 AND state != 'pending' "
                "ORDER BY message_id LIMIT 1000"
            ).fetchall()
            return [int(r[0]) for r in rows]

        return await self._read(job)

    async def dead_letters(self) -> list[Delivery]:
        return await self._read(_dead_letters)

    async def retry_dead(self, message_id: int | None, now_ms: int) -> list[int]:
        return await self._write(lambda c: _retry_dead(c, message_id, now_ms))

    async def prune(self, before_ms: int) -> tuple[int, int]:
        """Forget delivered, acknowledged items and finished idempotency keys older than
        `before_ms` (the hub never redelivers an acknowledged item, and a caller
        retrying after that long is sending a new request). Dead letters stay until
        they are retried. Returns (items, keys) deleted."""

        def job(c: sqlite3.Connection) -> tuple[int, int]:
            old = "SELECT message_id FROM deliveries WHERE state = 'delivered' AND hub_acked = 1 "
            old += "AND delivered_ms < ?"
            c.execute(f"DELETE FROM delivery_attempts WHERE message_id IN ({old})", (before_ms,))
            items = c.execute(
                "DELETE FROM deliveries WHERE state = 'delivered' AND hub_acked = 1 "
                "AND delivered_ms < ?",
                (before_ms,),
            ).rowcount
            keys = c.execute(
                "DELETE FROM idempotency WHERE state = 'done' AND done_ms < ?", (before_ms,)
            ).rowcount
            return items, keys

        return await self._write(job)

    async def attempts(self, message_id: int) -> list[tuple[int, int, str, str | None]]:
        def job(c: sqlite3.Connection) -> list[tuple[int, int, str, str | None]]:
            rows = c.execute(
                "SELECT attempt, at_ms, outcome, detail FROM delivery_attempts "
                "WHERE message_id = ? ORDER BY attempt",
                (message_id,),
            ).fetchall()
            return [(int(r[0]), int(r[1]), str(r[2]), r[3]) for r in rows]

        return await self._read(job)


# -- the offline tools ----------------------------------------------------------------


def _offline(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StorageError(f"no adapter database at {path} (has the adapter run yet?)")
    conn = sqlite3.connect(path, isolation_level=None)
    _configure(conn)
    migrate(conn, MIGRATIONS)
    return conn


def offline_dead_letters(path: Path) -> list[Delivery]:
    conn = _offline(path)
    try:
        return _dead_letters(conn)
    finally:
        conn.close()


def offline_retry_dead(path: Path, message_id: int | None, now_ms: int) -> list[int]:
    """Put dead letters back in the queue; a running adapter delivers them within a
    second, a stopped one at its next start."""
    conn = _offline(path)
    try:
        return _in_transaction(conn, lambda c: _retry_dead(c, message_id, now_ms))
    finally:
        conn.close()
