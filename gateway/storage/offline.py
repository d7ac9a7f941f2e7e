"""Connections for the offline tools (the admin CLI, backup, the verifier): plain
synchronous SQLite, never used inside the event loop. Safe while a hub serves the
same file: SQLite's write lock serialises them with the hub's group commits."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from gateway.storage.database import (
    StorageError,
    Tx,
    _configure_writer,
    _truncate_wal,
    migrate,
)
from gateway.storage.ledger_store import (
    LedgerRawRow,
    LedgerWriter,
    StoredCheckpoint,
    all_checkpoints,
    iter_ledger,
)


def open_sync(path: Path) -> sqlite3.Connection:
    """A plain connection for the offline CLI tools (never used inside the event loop)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    _configure_writer(conn)
    migrate(conn)
    return conn


def read_ledger_file(path: Path) -> tuple[list[StoredCheckpoint], Iterator[LedgerRawRow]]:
    """Open a ledger database read-only (for the offline verifier): its checkpoints and
    an iterator over its rows. The file is never written, not even migrated."""
    if not path.exists():
        raise StorageError(f"no such database: {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    # A note that is not UTF-8 must fail its checkpoint, not the whole run.
    conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
    checkpoints = all_checkpoints(conn)

    def rows() -> Iterator[LedgerRawRow]:
        try:
            yield from iter_ledger(conn)
        finally:
            conn.close()

    return checkpoints, rows()


@contextlib.contextmanager
def offline_read(path: Path) -> Iterator[Tx]:
    """A read-only snapshot for offline tools; takes no write lock."""
    if not path.exists():
        raise StorageError(f"no such database: {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        yield Tx(conn, None)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@contextlib.contextmanager
def offline_transaction(path: Path) -> Iterator[Tx]:
    """One write transaction for an offline tool; safe while the hub is serving
    (SQLite's write lock serialises it with the hub's group commits)."""
    conn = open_sync(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        ledger = LedgerWriter()
        ledger.load(conn)
        try:
            yield Tx(conn, ledger)
            ledger.flush(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        _truncate_wal(conn)
    finally:
        conn.close()
