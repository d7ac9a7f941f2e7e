"""The ledger table: appends (inside the group-commit transaction) and reads.

Leaf data and commitments are built by the pure `gateway.ledger.leaf` functions;
this module only stores them. Indexes are assigned here, on the database thread,
so that they are gap-free and in commit order; a rolled-back job gives its
indexes back (`mark` / `reset`).

Must not: update or delete leaf data (the schema's triggers refuse it anyway).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.crypto.canonical import canonical_json
from gateway.ledger.leaf import commitment, leaf_data, leaf_hash, new_salt


@dataclass(frozen=True, slots=True)
class LedgerRef:
    index: int
    leaf_hash: bytes
    entry_type: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "leaf_hash": self.leaf_hash.hex()}


@dataclass(frozen=True, slots=True)
class LedgerRow:
    index: int
    entry_type: str
    time_ms: int
    leaf_data: bytes
    leaf_hash: bytes
    body: dict[str, Any] | None
    salt: bytes | None


class LedgerWriter:
    """Assigns indexes and inserts leaves. Used only from the database thread."""

    def __init__(self) -> None:
        self.size = 0

    def load(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger").fetchone()
        self.size = int(row[0])

    def mark(self) -> int:
        return self.size

    def reset(self, mark: int) -> None:
        self.size = mark

    def append(
        self,
        conn: sqlite3.Connection,
        entry_type: str,
        time_ms: int,
        body: dict[str, Any],
        actors: Sequence[str],
    ) -> LedgerRef:
        index = self.size
        salt = new_salt()
        full_body = {"type": entry_type, "time_ms": time_ms, **body}
        data = leaf_data(index, entry_type, time_ms, commitment(salt, full_body))
        digest = leaf_hash(data)
        conn.execute(
            "INSERT INTO ledger (idx, type, time_ms, leaf_data, leaf_hash, body, salt)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (index, entry_type, time_ms, data, digest, canonical_json(full_body), salt),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO ledger_actors (idx, org) VALUES (?, ?)",
            [(index, org) for org in set(actors)],
        )
        self.size = index + 1
        return LedgerRef(index, digest, entry_type)


def read_entries(conn: sqlite3.Connection, start: int, end: int) -> list[LedgerRow]:
    rows = conn.execute(
        "SELECT idx, type, time_ms, leaf_data, leaf_hash, body, salt FROM ledger"
        " WHERE idx >= ? AND idx < ? ORDER BY idx",
        (start, end),
    ).fetchall()
    return [
        LedgerRow(
            index=r[0],
            entry_type=r[1],
            time_ms=r[2],
            leaf_data=bytes(r[3]),
            leaf_hash=bytes(r[4]),
            body=json.loads(r[5]) if r[5] is not None else None,
            salt=bytes(r[6]) if r[6] is not None else None,
        )
        for r in rows
    ]


def leaf_hashes(conn: sqlite3.Connection, start: int, end: int) -> list[bytes]:
    rows = conn.execute(
        "SELECT leaf_hash FROM ledger WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
    ).fetchall()
    return [bytes(r[0]) for r in rows]


def ledger_size(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger").fetchone()[0])


def entry_actors(conn: sqlite3.Connection, index: int) -> set[str]:
    rows = conn.execute("SELECT org FROM ledger_actors WHERE idx = ?", (index,)).fetchall()
    return {r[0] for r in rows}
