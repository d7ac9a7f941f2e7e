"""Online backup and atomic restore of a node's SQLite database: the sqlite3 part.

`backup_database` copies a database with SQLite's online backup API while the hub
keeps serving: the copy is one read transaction, so it is a consistent snapshot of
everything committed when it started (WAL readers never block the hub's writer). The
copy is written beside its destination, switched to a single self-contained file
(rollback journal, no -wal/-shm), checked, fsynced and renamed into place, so a
backup file either is complete or does not exist.

`exclusive_database` and `install_database` let a restore swap a database in with one
rename, only when no other connection has it open.

Must not: decide whether a backup is acceptable (verifying its ledger is a use case,
in services/ops.py), or run inside the event loop (the CLI calls these).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.storage.database import StorageError
from gateway.storage.ledger_store import latest_checkpoint, ledger_size

_COMPANIONS = ("-wal", "-shm", "-journal")


class BackupError(StorageError):
    """A backup or restore could not be made; nothing was replaced."""


class DatabaseInUse(BackupError):
    """Another connection (a running hub, an admin command) has the database open."""


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """What a database file holds, as read from the file itself."""

    path: Path
    size_bytes: int
    schema_version: int
    ledger_size: int
    checkpoint_size: int | None  # tree size of the newest stored checkpoint


def companions(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in _COMPANIONS]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(conn: sqlite3.Connection, path: Path) -> DatabaseInfo:
    checkpoint = latest_checkpoint(conn)
    return DatabaseInfo(
        path=path,
        size_bytes=path.stat().st_size if path.exists() else 0,
        schema_version=int(conn.execute("PRAGMA user_version").fetchone()[0]),
        ledger_size=ledger_size(conn),
        checkpoint_size=None if checkpoint is None else checkpoint.size,
    )


def _open_source(src: Path) -> sqlite3.Connection:
    if not src.is_file():
        raise BackupError(f"no such database: {src}")
    # Read-only: the backup must never change (or migrate) the hub's database.
    conn = sqlite3.connect(f"file:{src}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def backup_database(src: Path, dst: Path, *, mode: int = 0o600) -> DatabaseInfo:
    """Copy `src` to `dst` (replacing it) as one consistent snapshot; safe while the hub
    writes. The copy gets `mode` (it holds everything the hub holds)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    for leftover in [partial, *companions(partial)]:
        leftover.unlink(missing_ok=True)
    try:
        source = _open_source(src)
        try:
            target = sqlite3.connect(partial, isolation_level=None)
            try:
                os.chmod(partial, mode)
                # pages=-1: all pages in one step, i.e. inside one read transaction. A
                # stepwise copy would restart whenever the hub commits and might never end.
                source.backup(target, pages=-1)
                # One self-contained file: a backup must not need a -wal beside it.
                target.execute("PRAGMA journal_mode=DELETE")
                # integrity_check, not quick_check: SQLite 3.40's quick_check reports false
                # NULLs in WITHOUT ROWID tables such as ledger_actors.
                result = target.execute("PRAGMA integrity_check(1)").fetchone()[0]
                if result != "ok":
                    raise BackupError(f"the copy fails SQLite's integrity_check: {result}")
                info = _describe(target, partial)
            finally:
                target.close()
        finally:
            source.close()
        _fsync_file(partial)
        os.replace(partial, dst)
        fsync_dir(dst.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {src}: {exc}") from exc
    finally:
        for leftover in [partial, *companions(partial)]:
            leftover.unlink(missing_ok=True)
    return dataclasses.replace(info, path=dst, size_bytes=dst.stat().st_size)


def describe_database(path: Path) -> DatabaseInfo:
    """Read a database file's schema version, ledger size and newest checkpoint."""
    try:
        conn = _open_source(path)
        try:
            return _describe(conn, path)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a readable zvh-gateway database: {exc}") from exc


@contextlib.contextmanager
def exclusive_database(path: Path) -> Iterator[None]:
    """Hold `path` exclusively (if it exists) for a restore; refuse if it is in use.

    Leaving WAL mode needs the only connection to the file, so it tells whether a
    hub or an admin command has it open; it also folds the WAL into the main file.
    The exclusive lock then keeps others out until the swap is done.
    """
    if not path.exists():
        yield
        return
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {path}: {exc}") from exc
    try:
        try:
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            if str(mode).lower() != "delete":
                raise DatabaseInUse(f"{path} is in use (stop the hub first)")
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as exc:
            raise DatabaseInUse(f"{path} is in use (stop the hub first)") from exc
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def install_database(staged: Path, target: Path, *, keep_previous: Path | None) -> None:
    """Move `staged` over `target` with one rename (atomic on one file system).

    Call inside `exclusive_database(target)`. The previous file stays reachable as
    `keep_previous` (a hard link, so nothing is copied). Stale companions of the
    target are removed: a -wal left beside a new main file would be replayed into it.
    """
    if staged.parent.resolve() != target.parent.resolve():
        raise BackupError("a staged database must be in the folder of its target")
    if target.exists():
        st = target.stat()
        os.chmod(staged, st.st_mode & 0o777)
        if os.geteuid() == 0:
            os.chown(staged, st.st_uid, st.st_gid)
        if keep_previous is not None:
            keep_previous.unlink(missing_ok=True)
            os.link(target, keep_previous)
    for stale in companions(target):
        stale.unlink(missing_ok=True)
    _fsync_file(staged)
    os.replace(staged, target)
    fsync_dir(target.parent)
