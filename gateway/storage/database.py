"""The hub's SQLite database: connections, migrations and the group-commit writer.

Owns every connection. One writer connection, on a thread of its own, runs all state
changes: it batches the jobs queued while its last batch ran into one transaction
(one fsync for many requests, `synchronous=FULL`); a failing job is undone alone
(the batch is rerun with a SAVEPOINT per job), so it never takes the others down.
Callers are answered only after the COMMIT returned, which is what makes
"acknowledged" mean "durable" (write-ahead). Bulk jobs (a batch of answers, the
review index) taken with interactive ones commit right after them, in a transaction
of their own, so that a large batch never holds up a single request's answer.

A job is a plain synchronous function `fn(tx) -> T` that runs on the database
thread; it must do no network I/O and no heavy CPU work (signatures are checked
before a job is queued). Reads go through a second, read-only connection, so they
never wait behind a batch.

Must not: contain business rules (those are in services/ and policy/), or run
SQLite calls on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import aiosqlite

from gateway.errors import GatewayError
from gateway.storage.ledger_store import (
    LedgerRef,
    LedgerWriter,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


async def _on_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on the connection's own thread, as one queued call.

    aiosqlite's public API is one thread hop per statement; a group commit runs many
    statements per job and many jobs per batch, so it hands the whole batch over at
    once through the (pinned) library's `_execute`, which every public call uses.
    """
    result: T = await conn._execute(fn, *args)  # type: ignore[no-untyped-call]
    return result


class TxObserver(Protocol):
    """What the database reports to metrics (names are closed-set labels)."""

    def observe_transaction(self, name: str, seconds: float, ok: bool) -> None: ...

    def observe_batch(self, jobs: int, seconds: float) -> None: ...

    def observe_job(self, name: str, seconds: float) -> None: ...

    def observe_commit(self, seconds: float) -> None: ...


class StorageError(GatewayError):
    """The database failed; the request was not made durable."""


class _JobFailedError(Exception):
    """A job raised in an optimistic (savepoint-free) batch: run it again isolated."""


class Tx:
    """One job's handle on the open transaction (or on the reader, for reads)."""

    __slots__ = ("_cache", "_callbacks", "_ledger", "_refs", "conn", "run_s")

    def __init__(
        self,
        conn: sqlite3.Connection,
        ledger: LedgerWriter | None,
        cache: dict[Hashable, Any] | None = None,
    ) -> None:
        self.conn = conn
        self._ledger = ledger
        # Shared by the jobs of one group commit (the batch holds the write lock, so
        # no other writer can change what it caches); a fresh dict per read otherwise.
        self._cache: dict[Hashable, Any] = {} if cache is None else cache
        self._callbacks: list[Callable[[], None]] = []
        self._refs: list[LedgerRef] = []
        self.run_s = 0.0  # time the job itself took on the database thread

    def cached(self, key: Hashable, read: Callable[[], T]) -> T:
        """`read()` once per batch: the membership and case reads that every exchange
        step repeats. Every store function that writes what is cached calls `forget`."""
        try:
            value: T = self._cache[key]
        except KeyError:
            value = self._cache[key] = read()
        return value

    def forget(self) -> None:
        self._cache.clear()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the event loop once this job's batch has committed."""
        self._callbacks.append(callback)

    def append_ledger(
        self, entry_type: str, time_ms: int, body: dict[str, Any], actors: tuple[str, ...]
    ) -> LedgerRef:
        if self._ledger is None:
            raise StorageError("ledger appends need a write transaction")
        ref = self._ledger.append(self.conn, entry_type, time_ms, body, actors)
        self._refs.append(ref)
        return ref


@dataclass(slots=True)
class _Job(Generic[T]):
    name: str
    fn: Callable[[Tx], T]
    future: asyncio.Future[T]
    bulk: bool = False
    queued: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Call(Generic[T]):
    """Something other than a job to run on the writer's connection (between batches)."""

    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]


_STOP = object()
# Linger for more jobs only after a batch of at least this many (see Database._linger).
_LINGER_FROM = 64
_LINGER_S = 0.002
_LINGER_GAP_S = 0.0003


def _set_result(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class Database:
    def __init__(
        self,
        path: Path,
        *,
        batch_max: int = 512,
        observer: TxObserver | None = None,
    ) -> None:
        self.path = path
        self._batch_max = batch_max
        self._observer = observer
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader: aiosqlite.Connection | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self.ledger = LedgerWriter()
        self._ledger_listeners: list[Callable[[list[LedgerRef]], None]] = []

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._jobs = queue.SimpleQueue()
        opened: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._writer_main, args=(opened,), name="db-writer", daemon=True
        )
        self._thread.start()
        try:
            await opened
        except BaseException:
            await self._join_writer()
            raise
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await _on_thread(self._reader, _configure_reader, self._reader._conn)
        self._checkpointer = await aiosqlite.connect(self.path, isolation_level=None)
        self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="db-checkpoints")

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        await self._join_writer()  # after every job queued before close
        for conn in (self._checkpointer, self._reader):
            if conn is not None:
                await conn.close()
        self._checkpointer = self._reader = None

    def _writer_main(self, opened: asyncio.Future[None]) -> None:
        """The writer thread: open, configure and migrate its connection, then serve."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except Exception as exc:
            self._post(_set_exception, opened, exc)
            return
        try:
            try:
                _configure_writer(conn)
                migrate(conn)
                self.ledger.load(conn)
            except Exception as exc:
                self._post(_set_exception, opened, exc)
                return
            self._post(_set_result, opened, None)
            self._serve(conn)
        finally:
            conn.close()

    async def _join_writer(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(thread.join)

    async def _checkpoint_loop(self, interval_s: float = 0.5) -> None:
        """Copy the WAL into the database file on a thread of its own.

        Left to the writer (SQLite's auto-checkpoint), a checkpoint runs inside a
        COMMIT and holds every queued request for as long as it takes to write and
        fsync up to 32 MiB. A PASSIVE checkpoint from another connection never blocks
        the writer; the auto-checkpoint stays as a safety net that is never reached
        while this loop keeps up."""
        assert self._checkpointer is not None
        conn = self._checkpointer
        while True:
            await asyncio.sleep(interval_s)
            try:
                await _on_thread(conn, _passive_checkpoint, conn._conn)
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed", extra={"error": type(exc).__name__})

    def add_ledger_listener(self, listener: Callable[[list[LedgerRef]], None]) -> None:
        """Called on the event loop with the refs of every committed batch, in order."""
        self._ledger_listeners.append(listener)

    # -- the two ways in -------------------------------------------------

    async def write(self, name: str, fn: Callable[[Tx], T], *, bulk: bool = False) -> T:
        """Queue `fn` for the next group commit; returns once it is durable.

        `bulk`: one of many jobs that one caller queues together (a batch of answers,
        the review index). Taken in the same batch as interactive jobs, they commit
        second, in a transaction of their own: at 64 concurrent requesters that took
        about 5 ms off the dat-request acknowledgement's p99 (bench/exchange.py),
        for one more fsync when both kinds are queued."""
        if self._thread is None:
            raise StorageError("database is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(name, fn, future, bulk))
        return await future

    async def read(self, name: str, fn: Callable[[Tx], T]) -> T:
        if self._reader is None:
            raise StorageError("database is not open")
        start = time.monotonic()
        reader = self._reader
        ok = False
        try:
            result: T = await _on_thread(reader, lambda: fn(Tx(reader._conn, None)))
            ok = True
            return result
        finally:
            if self._observer is not None:
                self._observer.observe_transaction(name, time.monotonic() - start, ok)

    async def truncate_wal(self) -> bool:
        """Fold the WAL into the main file and truncate it (after a purge)."""
        if self._thread is None:
            raise StorageError("database is not open")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Call(_truncate_wal, future))
        return await future

    # -- the writer ------------------------------------------------------

    def _serve(self, conn: sqlite3.Connection) -> None:
        """The writer thread's loop: collect queued jobs into batches, one transaction
        each, until `_STOP`.

        The thread takes its next batch itself, from everything queued while the last
        one ran: it never waits for the event loop to hand over work (which, under
        load, was most of a request's wait). A batch with both kinds commits its
        interactive jobs first and its bulk jobs right after (see `write`). Results
        go back to the event loop in commit order (`call_soon_threadsafe` keeps it),
        where `_settle` answers them.
        """
        carry: Any = None
        last = 0  # the size of the previous batch
        while True:
            item = carry if carry is not None else self._jobs.get()
            carry = None
            if item is _STOP:
                return
            if isinstance(item, _Call):
                self._run_call(conn, item)
                continue
            batch: list[_Job[Any]] = [item]
            carry = self._take_queued(batch)  # a call or _STOP: after this batch
            if carry is None and last >= _LINGER_FROM and len(batch) < self._batch_max:
                carry = self._linger(batch)
            last = len(batch)
            interactive = [job for job in batch if not job.bulk]
            bulk = [job for job in batch if job.bulk]
            for part in (interactive, bulk) if interactive and bulk else (batch,):
                try:
                    result = self._run_batch(conn, part)
                except Exception as exc:  # the COMMIT itself failed: nothing is durable
                    self._post(self._fail_batch, part, exc)
                else:
                    self._post(self._settle, part, *result)

    def _take_queued(self, batch: list[_Job[Any]]) -> Any:
        """Move the jobs queued now onto `batch`, up to the batch limit, without
        waiting. Returns the first queued item that is not a job (a call or _STOP), to
        run after the batch, or None."""
        while len(batch) < self._batch_max:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return None
            if not isinstance(item, _Job):
                return item
            batch.append(item)
        return None

    def _linger(self, batch: list[_Job[Any]]) -> Any:
        """Under heavy load (the last batch was large), keep collecting while jobs keep
        coming (a gap of _LINGER_GAP_S ends it; _LINGER_S at most): the callers the
        last commit answered are queueing their next jobs, and one fsync for all of
        them beats two half batches. Returns a non-job item that ended the wait, to
        run after this batch."""
        deadline = time.perf_counter() + _LINGER_S
        while len(batch) < self._batch_max and time.perf_counter() < deadline:
            # Sleep, then take what came: not one wake-up (and GIL hand-over) a job.
            time.sleep(_LINGER_GAP_S)
            size = len(batch)
            other = self._take_queued(batch)
            if other is not None or len(batch) == size:
                return other
        return None

    def _run_call(self, conn: sqlite3.Connection, call: _Call[Any]) -> None:
        try:
            value = call.fn(conn)
        except Exception as exc:
            self._post(_set_exception, call.future, exc)
        else:
            self._post(_set_result, call.future, value)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    def _fail_batch(self, batch: list[_Job[Any]], exc: Exception) -> None:
        log.error("group commit failed", extra={"jobs": len(batch), "error": type(exc).__name__})
        for job in batch:
            if not job.future.done():
                job.future.set_exception(StorageError("the database write failed"))

    def _settle(
        self,
        batch: list[_Job[Any]],
        outcomes: list[tuple[bool, Any, Tx]],
        thread_s: float,
        commit_s: float,
    ) -> None:
        """On the event loop, in commit order: answer the jobs, run their post-commit
        callbacks, tell the ledger listeners."""
        refs: list[LedgerRef] = []
        for job, (ok, value, tx) in zip(batch, outcomes, strict=True):
            self._observe(job, ok, tx)
            if ok:
                refs.extend(tx._refs)
                for callback in tx._callbacks:
                    try:
                        callback()
                    except Exception:
                        log.exception("post-commit callback failed", extra={"tx": job.name})
                if not job.future.done():
                    job.future.set_result(value)
            elif not job.future.done():
                job.future.set_exception(value)
        if refs:
            for listener in self._ledger_listeners:
                try:
                    listener(refs)
                except Exception:
                    log.exception("ledger listener failed")
        if self._observer is not None:
            try:
                self._observer.observe_batch(len(batch), thread_s)
                self._observer.observe_commit(commit_s)
            except Exception:
                log.exception("storage observer failed")

    def _observe(self, job: _Job[Any], ok: bool, tx: Tx) -> None:
        # Metrics must never keep a committed job's caller waiting.
        if self._observer is None:
            return
        try:
            self._observer.observe_transaction(job.name, time.monotonic() - job.queued, ok)
            self._observer.observe_job(job.name, tx.run_s)
        except Exception:
            log.exception("storage observer failed")

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_Job[Any]]
    ) -> tuple[list[tuple[bool, Any, Tx]], float, float]:
        """Runs on the database thread: one transaction for the whole batch.

        Optimistically without savepoints (they cost more than the typical job); if
        any job raises, the whole transaction is rolled back and the batch is run
        again with a savepoint per job, so that only the failing jobs are undone.
        Jobs are functions of the database and their arguments, so a rerun is safe.
        """
        began = time.perf_counter()
        try:
            outcomes, commit_s = self._attempt(conn, batch, isolate=False)
        except _JobFailedError:
            outcomes, commit_s = self._attempt(conn, batch, isolate=True)
        # The time the batch held the database thread (what the writer can sustain).
        return outcomes, time.perf_counter() - began, commit_s

    def _attempt(
        self, conn: sqlite3.Connection, batch: list[_Job[Any]], *, isolate: bool
    ) -> tuple[list[tuple[bool, Any, Tx]], float]:
        outcomes: list[tuple[bool, Any, Tx]] = []
        conn.execute("BEGIN IMMEDIATE")
        # Re-read the size under the write lock: an offline tool (the admin CLI) may
        # have appended while we were idle, and indexes must stay gap-free.
        self.ledger.load(conn)
        batch_mark = self.ledger.mark()
        cache: dict[Hashable, Any] = {}
        try:
            for job in batch:
                mark = self.ledger.mark()
                if isolate:
                    conn.execute("SAVEPOINT job")
                tx = Tx(conn, self.ledger, cache)
                began = time.perf_counter()
                try:
                    value = job.fn(tx)
                except Exception as exc:
                    if not isolate:
                        raise _JobFailedError from exc
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    self.ledger.reset(mark)
                    cache.clear()  # it may hold what the undone job wrote
                    outcomes.append((False, exc, tx))
                else:
                    if isolate:
                        conn.execute("RELEASE job")
                    outcomes.append((True, value, tx))
                finally:
                    tx.run_s = time.perf_counter() - began
            self.ledger.flush(conn)
            began = time.perf_counter()
            conn.execute("COMMIT")
            commit_s = time.perf_counter() - began
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.ledger.reset(batch_mark)
            raise
        return outcomes, commit_s


def _configure_writer(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every COMMIT, so an acknowledged entry survives power loss.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    # Purged bodies and deleted inbox rows are overwritten, not left in free pages.
    conn.execute("PRAGMA secure_delete=ON")
    # Fold the WAL back every 32 MiB instead of 4 MiB: fewer, larger checkpoints.
    conn.execute("PRAGMA wal_autocheckpoint=8192")


def _passive_checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


def _truncate_wal(conn: sqlite3.Connection, attempts: int = 50) -> bool:
    """Checkpoint the WAL into the main file and truncate it. A reader holding an old
    snapshot makes SQLite answer 'busy' and keep the old frames (which may hold purged
    bytes), so retry for a while, and say whether it worked."""
    for attempt in range(attempts):
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if not busy:
            return True
        time.sleep(min(0.2, 0.01 * (attempt + 1)))
    log.warning("could not truncate the WAL: a reader keeps an old snapshot open")
    return False


def _configure_reader(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA query_only=ON")
    conn.execute("PRAGMA busy_timeout=10000")


def migrate(conn: sqlite3.Connection, folder: str = "migrations") -> int:
    """Apply the numbered, forward-only migrations that are newer than the file.

    `folder` is the migration set: `migrations` for the nodes, `adapter_migrations`
    for a partner's adapter (its own database, which shares no table with a hub's)."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    files = sorted(
        (
            f
            for f in resources.files("gateway.storage").joinpath(folder).iterdir()
            if f.name.endswith(".sql")
        ),
        key=lambda f: f.name,
    )
    for file in files:
        number = int(file.name.split("_", 1)[0])
        if number <= current:
            continue
        script = file.read_text(encoding="utf-8")
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        current = number
    return current
