"""Attachment blob files: the ciphertext of each blob, one file per blob, named by
the SHA-256 of its content, in a `blobs/` folder next to the database.

An upload is written to a temporary file in the same folder (so the final rename is
atomic), fsynced, and renamed to its hash only when the whole body arrived and its
digest matched; anything else leaves no file behind. The hub never holds a blob
whole in memory. Must not decide who may read or delete a blob (services/blobs.py
does), and must not open anything outside its folder: names are checked to be
64 lowercase hex digits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

_BLOB_ID = re.compile(r"[0-9a-f]{64}")
UPLOAD_PREFIX = ".upload-"
# Folders of hard links a running backup keeps (storage/blob_backup.py).
PIN_PREFIX = ".backup-pin-"
STALE_PIN_S = 86_400.0


def is_blob_id(value: str) -> bool:
    return _BLOB_ID.fullmatch(value) is not None


def drop_stale_pins(folder: Path, *, older_than_s: float = STALE_PIN_S) -> None:
    """Remove pin folders a crashed backup left: they would keep deleted blobs alive.
    A day old at least, so a running backup's pins stay."""
    if not folder.is_dir():
        return
    cutoff = time.time() - older_than_s
    for pin in folder.glob(PIN_PREFIX + "*"):
        with contextlib.suppress(FileNotFoundError):
            if pin.is_dir() and pin.stat().st_mtime < cutoff:
                shutil.rmtree(pin, ignore_errors=True)


class Upload:
    """One blob being received: hash and size counted as the bytes arrive."""

    def __init__(self, folder: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=folder)
        self._fd = fd
        self.path = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0
        self._closed = False

    def write(self, chunk: bytes) -> None:
        """Append a chunk (small: the web layer hands over at most 64 KiB at a time)."""
        self._hash.update(chunk)
        self.size += len(chunk)
        view = memoryview(chunk)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def digest(self) -> bytes:
        return self._hash.digest()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    async def commit(self, final: Path) -> None:
        """fsync, rename to `final` and fsync the folder, off the event loop."""

        def finish() -> None:
            os.fsync(self._fd)
            self._close()
            os.replace(self.path, final)
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

        await asyncio.to_thread(finish)

    def abort(self) -> None:
        """Drop the partial file (a failed, refused or cut-off upload)."""
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class BlobFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def next_to(cls, database: Path) -> BlobFiles:
        return cls(database.parent / "blobs")

    def open(self) -> None:
        """Create the folder (owner only) and drop uploads and backup pins a crash left
        behind."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in self.folder.glob(UPLOAD_PREFIX + "*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        self.drop_stale_pins()

    def drop_stale_pins(self) -> None:
        drop_stale_pins(self.folder)

    def start(self) -> Upload:
        return Upload(self.folder)

    def path(self, blob_id: str) -> Path:
        if not is_blob_id(blob_id):
            raise ValueError("not a blob id")
        return self.folder / blob_id

    def exists(self, blob_id: str) -> bool:
        return is_blob_id(blob_id) and (self.folder / blob_id).is_file()

    def delete(self, blob_id: str) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.path(blob_id).unlink()

    def names(self) -> Iterator[str]:
        """Blob ids of the files present (for the sweep of orphans)."""
        if not self.folder.is_dir():
            return
        for entry in self.folder.iterdir():
            if is_blob_id(entry.name):
                yield entry.name

    def stored_bytes(self) -> int:
        total = 0
        for name in self.names():
            with contextlib.suppress(FileNotFoundError):
                total += (self.folder / name).stat().st_size
        return total
