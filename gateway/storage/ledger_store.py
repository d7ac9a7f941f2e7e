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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.crypto.canonical import canonical_json
from gateway.ledger.leaf import commitment_of, leaf_data, leaf_hash, new_salt
from gateway.ledger.merkle import CompactTree
from gateway.storage.rows import insert_rows


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


Mark = tuple[int, int, int, int]


def _first_str(body: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = body.get(key)
        if value is not None:
            return value if isinstance(value, str) else str(value)
    return None


def _recipients(body: dict[str, Any]) -> str | None:
    """A case message's recipients, for display ("a, b"); the org filter reads
    ledger_actors, not this."""
    listed = body.get("recipients")
    if not isinstance(listed, list) or not listed:
        return None
    return ", ".join(str(o) for o in listed)


def _review_row(index: int, entry_type: str, time_ms: int, body: dict[str, Any]) -> tuple[Any, ...]:
    """The review index's row of an entry (what the privacy officers' filters read).
    Messages and referrals name their parties `sender` and `recipients`/`recipient`."""
    case_ref = _first_str(body, "case_ref")
    return (
        index,
        entry_type,
        time_ms,
        _first_str(body, "exchange_id"),
        case_ref,
        _first_str(body, "theme"),
        case_ref,
        _first_str(body, "requester", "from", "org", "sender"),
        _first_str(body, "holder", "to", "denied_org", "recipient")
        or (_recipients(body) if entry_type == "message" else None),
        _first_str(body, "decision"),
        _first_str(body, "code") if entry_type == "denied" else None,
    )


class LedgerWriter:
    """Assigns indexes and buffers leaves; `flush` writes them with one executemany per
    table right before COMMIT. Used only from the database thread (or an offline tool's
    transaction). A rolled-back job's rows are dropped with `reset(mark)`."""

    def __init__(self) -> None:
        self.size = 0
        self._rows: list[tuple[int, str, int, bytes, bytes, bytes, bytes]] = []
        self._actors: list[tuple[int, str]] = []
        self._cases: list[tuple[int, str]] = []

    def load(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger").fetchone()
        self.size = int(row[0])
        self._rows.clear()
        self._actors.clear()
        self._cases.clear()

    def mark(self) -> Mark:
        return (self.size, len(self._rows), len(self._actors), len(self._cases))

    def reset(self, mark: Mark) -> None:
        self.size = mark[0]
        del self._rows[mark[1] :]
        del self._actors[mark[2] :]
        del self._cases[mark[3] :]

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
        stored = canonical_json(full_body)
        data = leaf_data(index, entry_type, time_ms, commitment_of(salt, stored))
        digest = leaf_hash(data)
        self._rows.append((index, entry_type, time_ms, data, digest, stored, salt))
        self._actors.extend((index, org) for org in set(actors))
        case_ref = body.get("case_ref")
        if isinstance(case_ref, str):
            self._cases.append((index, case_ref))
        self.size = index + 1
        return LedgerRef(index, digest, entry_type)

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write the buffered leaves (inside the open transaction, before COMMIT)."""
        insert_rows(
            conn,
            "INSERT INTO ledger (idx, type, time_ms, leaf_data, leaf_hash, body, salt)",
            self._rows,
        )
        insert_rows(conn, "INSERT OR IGNORE INTO ledger_actors (idx, org)", self._actors)
        insert_rows(conn, "INSERT INTO ledger_cases (idx, case_ref)", self._cases)
        self._rows.clear()
        self._actors.clear()
        self._cases.clear()


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


class LedgerHashSource:
    """`HashSource` over the ledger table (for proofs computed on a database thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        return leaf_hashes(self._conn, start, end)


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    time_ms: int
    root: bytes
    note: str
    tree: bytes
    chain: str | None = None  # canonical JSON naming the previous stored checkpoint
    chain_sig: str | None = None


_CP_COLUMNS = "size, time_ms, root, note, tree, chain, chain_sig"


def _checkpoint(r: tuple[Any, ...]) -> StoredCheckpoint:
    return StoredCheckpoint(
        int(r[0]),
        int(r[1]),
        _raw(r[2]) or b"",
        str(r[3]),
        _raw(r[4]) or b"",
        None if r[5] is None else str(r[5]),
        None if r[6] is None else str(r[6]),
    )


def latest_checkpoint(conn: sqlite3.Connection) -> StoredCheckpoint | None:
    row = conn.execute(
        f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY size DESC, time_ms DESC LIMIT 1"
    ).fetchone()
    return None if row is None else _checkpoint(row)


def all_checkpoints(conn: sqlite3.Connection) -> list[StoredCheckpoint]:
    rows = conn.execute(f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY size, time_ms").fetchall()
    return [_checkpoint(r) for r in rows]


def insert_checkpoint(conn: sqlite3.Connection, cp: StoredCheckpoint) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO checkpoints (size, time_ms, root, note, tree, chain, chain_sig)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (cp.size, cp.time_ms, cp.root, cp.note, cp.tree, cp.chain, cp.chain_sig),
    )


def tree_after(conn: sqlite3.Connection, tree: CompactTree, upto: int, chunk: int = 4096) -> int:
    """Append the stored leaf hashes [tree.size, upto) to `tree`; returns the new size."""
    while tree.size < upto:
        hashes = leaf_hashes(conn, tree.size, min(upto, tree.size + chunk))
        if not hashes:
            break
        for digest in hashes:
            tree.append(digest)
    return tree.size


def _raw(value: object) -> bytes | None:
    """Column value as bytes. A TEXT value where a BLOB belongs is kept (as its UTF-8
    bytes) so that the verifier reports the row instead of crashing on it."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()


_RAW_COLUMNS = ("leaf_data", "leaf_hash", "body", "salt")


def iter_ledger(conn: sqlite3.Connection, chunk: int = 10_000) -> Iterator[LedgerRawRow]:
    """Every ledger row in index order, raw (for the offline verifier), negative
    indexes included: nothing in the file is assumed well-formed."""
    last = -(2**63)
    first = True
    while True:
        rows = conn.execute(
            "SELECT idx, leaf_data, leaf_hash, body, salt FROM ledger"
            f" WHERE idx {'>=' if first else '>'} ? ORDER BY idx LIMIT ?",
            (last, chunk),
        ).fetchall()
        first = False
        if not rows:
            return
        for r in rows:
            wrong = [
                name
                for name, v in zip(_RAW_COLUMNS, r[1:], strict=True)
                if v is not None and not isinstance(v, bytes)
            ]
            yield LedgerRawRow(
                int(r[0]),
                _raw(r[1]) or b"",
                _raw(r[2]) or b"",
                _raw(r[3]),
                _raw(r[4]),
                f"{', '.join(wrong)} not stored as BLOB" if wrong else None,
            )
        last = int(rows[-1][0])


@dataclass(frozen=True, slots=True)
class LedgerRawRow:
    index: int
    leaf_data: bytes
    leaf_hash: bytes
    body: bytes | None
    salt: bytes | None
    storage_problem: str | None = None  # e.g. a column holding TEXT where a BLOB belongs


def purge_candidates(
    conn: sqlite3.Connection, now_ms: int, days_by_type: dict[str, int], default_days: int
) -> list[int]:
    """Entries of closed cases whose retention (per entry type) has run out."""
    rows = conn.execute(
        "SELECT l.idx, l.type, c.closed_ms FROM ledger_cases lc"
        " JOIN ledger l ON l.idx = lc.idx JOIN cases c ON c.case_ref = lc.case_ref"
        " WHERE c.status = 'closed' AND l.body IS NOT NULL AND l.type != 'purge'"
        " ORDER BY l.idx"
    ).fetchall()
    day = 86_400_000
    return [
        int(idx)
        for idx, entry_type, closed_ms in rows
        if closed_ms is not None
        and closed_ms + days_by_type.get(entry_type, default_days) * day <= now_ms
    ]


def purge_entries(conn: sqlite3.Connection, indexes: Sequence[int]) -> None:
    """Drop body and salt (the triggers allow nothing else) and the link to the case."""
    for start in range(0, len(indexes), 500):
        chunk = list(indexes[start : start + 500])
        marks = ",".join("?" * len(chunk))
        conn.execute(f"UPDATE ledger SET body = NULL, salt = NULL WHERE idx IN ({marks})", chunk)
        conn.execute(f"DELETE FROM ledger_cases WHERE idx IN ({marks})", chunk)


def purge_case_data(conn: sqlite3.Connection, case_refs: Sequence[str]) -> None:
    """Delete the identifying operational data of cases whose retention ran out."""
    for ref in case_refs:
        conn.execute("DELETE FROM inbox WHERE case_ref = ?", (ref,))
        conn.execute(
            "DELETE FROM wat_requests WHERE exchange_id IN"
            " (SELECT exchange_id FROM exchanges WHERE case_ref = ?)",
            (ref,),
        )
        conn.execute(
            "DELETE FROM exchange_recipients WHERE exchange_id IN"
            " (SELECT exchange_id FROM exchanges WHERE case_ref = ?)",
            (ref,),
        )
        conn.execute("DELETE FROM exchanges WHERE case_ref = ?", (ref,))
        conn.execute("DELETE FROM case_subjects WHERE case_ref = ?", (ref,))


def cases_of(conn: sqlite3.Connection, indexes: Sequence[int]) -> list[str]:
    refs: set[str] = set()
    for start in range(0, len(indexes), 500):
        chunk = list(indexes[start : start + 500])
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT DISTINCT case_ref FROM ledger_cases WHERE idx IN ({marks})", chunk
        ).fetchall()
        refs.update(r[0] for r in rows)
    return sorted(refs)


def closed_cases_before(conn: sqlite3.Connection, cutoff_ms: int) -> list[str]:
    """Closed cases (closed before the cutoff) that still hold operational data."""
    rows = conn.execute(
        "SELECT c.case_ref FROM cases c WHERE c.status = 'closed' AND c.closed_ms <= ?"
        " AND (EXISTS (SELECT 1 FROM case_subjects s WHERE s.case_ref = c.case_ref)"
        " OR EXISTS (SELECT 1 FROM exchanges e WHERE e.case_ref = c.case_ref))"
        " ORDER BY c.case_ref",
        (cutoff_ms,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def index_for_review(conn: sqlite3.Connection, limit: int = 5000) -> int:
    """Add the next entries to the privacy officers' review index; returns how many.

    The index is derived data: it is built after the fact, off the append path, so
    that eight secondary indexes do not slow down every exchange step."""
    row = conn.execute("SELECT COALESCE(MAX(idx), -1) FROM review_entries").fetchone()
    rows = conn.execute(
        "SELECT idx, type, time_ms, body FROM ledger WHERE idx > ? ORDER BY idx LIMIT ?",
        (int(row[0]), limit),
    ).fetchall()
    batch: list[tuple[Any, ...]] = []
    for idx, entry_type, time_ms, body in rows:
        try:
            data = json.loads(body) if body is not None else {}
        except ValueError:
            data = {}
        batch.append(
            _review_row(
                int(idx), str(entry_type), int(time_ms), data if isinstance(data, dict) else {}
            )
        )
    conn.executemany(
        "INSERT OR IGNORE INTO review_entries (idx, type, time_ms, exchange_id, case_ref, theme,"
        " org, counterpart, decision, code) VALUES (?, ?, ?, ?, ?,"
        " COALESCE(?, (SELECT theme FROM cases WHERE case_ref = ?)), ?, ?, ?, ?)",
        batch,
    )
    return len(rows)
