"""The attachment blobs of a backup: the files the database snapshot's `blobs` rows
name, copied beside the backup and checked against their names.

A blob file is immutable and named by the SHA-256 of its content, so a copy is
right exactly when its hash is its name; that is checked for every file copied, at
backup and at restore. What the hub deletes while a backup runs (a blob every
recipient fetched) is kept for the backup by `pin_blobs`: before the database
snapshot starts, every blob file is hard-linked into a pin folder inside `blobs/`,
so a row in the snapshot finds its file there even if the hub deleted it since.

Layout: the backup `hub-X.sqlite3` has its blobs in `hub-X.sqlite3.blobs/`
(0700, files 0600). Must not: decide whether a backup or restore may go ahead
(services/ops.py does), or serve blobs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.storage.backup import BackupError, fsync_dir
from gateway.storage.blob_files import PIN_PREFIX, UPLOAD_PREFIX, drop_stale_pins, is_blob_id

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class BlobCopyReport:
    """What a backup or restore did with the blobs its database names."""

    folder: Path
    wanted: int  # blobs the database names
    present: int  # of them, verified files now in `folder`
    bytes: int
    missing: tuple[str, ...]  # no file anywhere
    corrupt: tuple[str, ...]  # only files whose SHA-256 is not their name (or wrong size)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.corrupt

    def summary(self) -> str:
        """One line for the operator; blob ids are hashes of ciphertext, no personal data."""
        line = f"blobs: {self.present} of {self.wanted} ({self.bytes} bytes) in {self.folder}"
        for what, ids in (("MISSING", self.missing), ("CORRUPT", self.corrupt)):
            if ids:
                line += f"; {what} {len(ids)}: {' '.join(ids)}"
        return line

    def as_json(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "wanted": self.wanted,
            "present": self.present,
            "bytes": self.bytes,
            "missing": list(self.missing),
            "corrupt": list(self.corrupt),
        }


def blobs_folder_of(backup: Path) -> Path:
    """Where the blobs of the backup file `backup` are."""
    return backup.with_name(backup.name + ".blobs")


def snapshot_blobs(database: Path) -> dict[str, int]:
    """Blob id -> size, from a (stopped or snapshot) database file's `blobs` rows.
    A database from before the blobs table has none."""
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)
        try:
            rows = conn.execute("SELECT blob_id, MAX(size) FROM blobs GROUP BY blob_id").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise BackupError(f"cannot read the blobs of {database}: {exc}") from exc
    return {str(r[0]): int(r[1]) for r in rows if is_blob_id(str(r[0]))}


@contextlib.contextmanager
def pin_blobs(live: Path) -> Iterator[Path | None]:
    """Hard-link every blob file in `live` into a pin folder for the time of a backup.

    Yields the pin folder, or None where links cannot be made (no blobs folder, or a
    file system without hard links): the backup then copies from `live` only, and a
    blob deleted meanwhile is reported missing.
    """
    if not live.is_dir():
        yield None
        return
    drop_stale_pins(live)
    pin = live / f"{PIN_PREFIX}{os.getpid()}-{time.time_ns()}"
    try:
        pin.mkdir(mode=0o700)
        for entry in live.iterdir():
            if is_blob_id(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    os.link(entry, pin / entry.name)
    except OSError:
        shutil.rmtree(pin, ignore_errors=True)
        yield None
        return
    try:
        yield pin
    finally:
        shutil.rmtree(pin, ignore_errors=True)


def _verified_copy(src: Path, dst: Path, blob_id: str, size: int) -> bool:
    """Copy `src` to `dst` (0600, fsynced) hashing as it goes; True if the content's
    SHA-256 is `blob_id` and its size `size`. `dst` is removed otherwise."""
    digest = hashlib.sha256()
    total = 0
    try:
        with src.open("rb") as fin:
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fout:
                while chunk := fin.read(_CHUNK):
                    digest.update(chunk)
                    total += len(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
    except FileNotFoundError:
        dst.unlink(missing_ok=True)
        return False
    if digest.hexdigest() != blob_id or total != size:
        dst.unlink(missing_ok=True)
        return False
    return True


def file_matches(path: Path, blob_id: str, size: int) -> bool:
    """The file exists, has `size` bytes and its SHA-256 is `blob_id`."""
    try:
        if path.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return False
    return digest.hexdigest() == blob_id


def _place(
    wanted: Mapping[str, int], sources: Sequence[Path | None], staged: Path
) -> tuple[int, int, list[str], list[str]]:
    """Copy each wanted blob from the first source holding a correct file into
    `staged`; (present, bytes, missing, corrupt)."""
    present = total = 0
    missing: list[str] = []
    corrupt: list[str] = []
    for blob_id, size in sorted(wanted.items()):
        seen = False
        for source in sources:
            if source is None or not (source / blob_id).is_file():
                continue
            seen = True
            if _verified_copy(source / blob_id, staged / blob_id, blob_id, size):
                present += 1
                total += size
                break
        else:
            (corrupt if seen else missing).append(blob_id)
    return present, total, missing, corrupt


def write_backup_blobs(
    wanted: Mapping[str, int], sources: Sequence[Path | None], dest: Path
) -> BlobCopyReport:
    """Make `dest` hold exactly the `wanted` blobs (a backup's folder: files of blobs
    the snapshot no longer names do not outlive their retention in an old backup).

    The new folder is filled beside `dest` and swapped in by renames, so `dest` is
    either the old folder or the new one, complete.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    for leftover in (staged, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        staged.mkdir(mode=0o700)
        # An existing folder of the same backup (--force) is a source too, but only after
        # the live ones: it may be older than the snapshot.
        present, total, missing, corrupt = _place(wanted, [*sources, dest], staged)
        fsync_dir(staged)
        if dest.exists():
            os.replace(dest, old)
        os.replace(staged, dest)
        fsync_dir(dest.parent)
    except OSError as exc:
        raise BackupError(f"cannot write the blobs to {dest}: {exc}") from exc
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return BlobCopyReport(dest, len(wanted), present, total, tuple(missing), tuple(corrupt))


def restore_blobs(wanted: Mapping[str, int], backup: Path, live: Path) -> BlobCopyReport:
    """Put the `wanted` blobs into the hub's `live` folder from the backup's folder.

    A live file that already verifies is kept; anything else comes from `backup`,
    copied to a temporary name, checked and renamed. Files the restored database
    does not name are left to the hub's sweep (orphans older than its grace period).
    """
    live.mkdir(mode=0o700, parents=True, exist_ok=True)
    present = total = 0
    missing: list[str] = []
    corrupt: list[str] = []
    try:
        for blob_id, size in sorted(wanted.items()):
            if file_matches(live / blob_id, blob_id, size):
                present, total = present + 1, total + size
                continue
            source = backup / blob_id
            if not source.is_file():
                (corrupt if (live / blob_id).is_file() else missing).append(blob_id)
                continue
            # The upload prefix: a crash leaves nothing the hub does not clear at start.
            tmp = live / f"{UPLOAD_PREFIX}restore-{os.getpid()}-{blob_id}"
            if _verified_copy(source, tmp, blob_id, size):
                os.replace(tmp, live / blob_id)
                present, total = present + 1, total + size
            else:
                corrupt.append(blob_id)
        fsync_dir(live)
    except OSError as exc:
        raise BackupError(f"cannot restore the blobs into {live}: {exc}") from exc
    return BlobCopyReport(live, len(wanted), present, total, tuple(missing), tuple(corrupt))
