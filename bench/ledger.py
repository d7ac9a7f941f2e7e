"""Benchmark of the hub's ledger: durable appends, inclusion proofs and offline verification.

    .venv/bin/python bench/ledger.py [--seconds S] [--writers 1,16,256] [--batch-max B]
                                     [--entries N] [--proofs P] [--profile]
                                     [--skip-appends] [--skip-large] [--dir DIR] [--keep]

Not a test: it prints a table, with the targets beside the figures.

1. Durable appends/s: for each writer count C, a fresh SQLite file and the hub's own
   `Database` (group commit, WAL, synchronous=FULL); C concurrent writers each loop
   `await db.write(...)` with ONE `tx.append_ledger(...)` of a dat-request-like body
   (three actors and a case link, as the exchange service writes them). After a
   warm-up, appends acknowledged in a window of S seconds are counted; also shown:
   the mean group-commit size, the writer thread's time per append in the job
   (`append_ledger`) and in COMMIT (amortised), and the p50/p99 acknowledgement
   latency. At 256 writers the same run with a minimal body (`{"n": n}`, one actor,
   no case link) shows how much of the cost is the body's.
2. Inclusion-proof latency at N (default 1,000,000) entries: the file is built
   directly (one transaction of executemany inserts; leaf data, commitments and leaf
   hashes from `gateway.ledger.leaf`; a signed checkpoint every 100,000 entries and at
   the end), then opened by the hub's `Database` + `LedgerService`, whose start-up
   warms the subtree cache; P random indexes are proved at the signed size through
   `LedgerService.inclusion` (what the endpoint calls: one hop to the read thread) and
   through the pure `inclusion_proof` over `LedgerHashSource` with a warm
   `SubtreeCache`. Every proof is verified against the signed root (not timed).
3. The full offline verification of that file: `gateway.services.admin.verify_file`,
   as `zvh-gateway ledger verify` runs it.

`--profile` runs cProfile during the measured window of the largest writer count, in
the event-loop thread and in the database writer thread (where the group commit, the
canonical JSON and the inserts run), and prints each one's top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.clock import SystemClock
from gateway.crypto.canonical import canonical_json
from gateway.crypto.keys import OrgKeys
from gateway.ledger.checkpoint import Checkpoint, origin_for, sign_checkpoint
from gateway.ledger.leaf import commitment_of, leaf_data, leaf_hash
from gateway.ledger.merkle import CompactTree, SubtreeCache, inclusion_proof, verify_inclusion
from gateway.services.admin import verify_file
from gateway.services.ledger import LedgerService
from gateway.storage import ledger_store
from gateway.storage.database import Database, Tx
from gateway.storage.ledger_store import LedgerHashSource, LedgerRef, StoredCheckpoint
from gateway.storage.offline import open_sync

HUB = "hub-bench"
TARGET_APPENDS = 20_000  # durable appends/s at 256 writers
TARGET_PROOF_P99_MS = 5.0
TARGET_VERIFY_S = 60.0
CHECKPOINT_EVERY = 100_000
BASE_TIME_MS = 1_795_000_000_000


# -- 1. durable appends ----------------------------------------------------------------------


class BatchStats:
    """The `TxObserver` the hub's metrics implement: counts group commits."""

    def __init__(self) -> None:
        self.batches = 0
        self.jobs = 0
        self.job_seconds = 0.0  # in the jobs' functions on the writer thread
        self.commit_seconds = 0.0  # in COMMIT (the WAL write and its fsync)

    def observe_transaction(self, name: str, seconds: float, ok: bool) -> None:
        pass

    def observe_job(self, name: str, seconds: float) -> None:
        self.job_seconds += seconds

    def observe_commit(self, seconds: float) -> None:
        self.commit_seconds += seconds

    def observe_batch(self, jobs: int, seconds: float) -> None:
        self.batches += 1
        self.jobs += jobs


def _step_body(writer: int, n: int) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A body shaped like the exchange service's dat-request entries."""
    requester = f"partner-{writer % 50:02d}"
    recipients = [f"partner-{(writer + 1) % 50:02d}", f"partner-{(writer + 2) % 50:02d}"]
    digest = f"{writer:08x}{n:056x}"
    body = {
        "exchange_id": f"{writer:08x}-0000-4000-8000-{n:012x}",
        "case_ref": f"C-{writer:04d}",
        "subject_ref": "S1",
        "requester": requester,
        "recipients": recipients,
        "payload_sha256": dict.fromkeys(recipients, digest),
        "request_sha256": digest,
    }
    return body, (requester, *recipients)


def _minimal_body(writer: int, n: int) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The smallest useful body: one actor, no case link (for the sensitivity row)."""
    return {"n": n}, (f"partner-{writer % 50:02d}",)


def _append(tx: Tx, *, body: dict[str, Any], actors: tuple[str, ...], now_ms: int) -> LedgerRef:
    return tx.append_ledger("dat-request", now_ms, body, actors)


@dataclass(frozen=True, slots=True)
class AppendResult:
    writers: int
    appends: int
    seconds: float
    mean_batch: float
    job_us: float  # writer-thread time per append in the job (append_ledger)
    commit_us: float  # writer-thread time per append in COMMIT, amortised
    p50_ms: float
    p99_ms: float
    profiles: tuple[tuple[str, str], ...] = ()

    @property
    def rate(self) -> float:
        return self.appends / self.seconds


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _top(profile: cProfile.Profile, limit: int = 22) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    return out.getvalue()


async def append_rate(
    path: Path,
    writers: int,
    seconds: float,
    warmup: float,
    *,
    profile: bool = False,
    batch_max: int = 512,
    make_body: Callable[[int, int], tuple[dict[str, Any], tuple[str, ...]]] = _step_body,
) -> AppendResult:
    stats = BatchStats()
    db = Database(path, observer=stats, batch_max=batch_max)
    await db.open()
    clock = SystemClock()
    measuring = False
    stopping = False
    latencies: list[float] = []

    async def writer(number: int) -> None:
        n = 0
        while not stopping:
            body, actors = make_body(number, n)
            job = functools.partial(_append, body=body, actors=actors, now_ms=clock.now_ms())
            started = time.perf_counter()
            await db.write("bench-append", job)
            if measuring:
                latencies.append(time.perf_counter() - started)
            n += 1

    tasks = [asyncio.create_task(writer(w)) for w in range(writers)]
    await asyncio.sleep(warmup)
    loop_profile = cProfile.Profile()
    db_profile = cProfile.Profile()
    if profile:
        # cProfile follows one thread: enable one here and one on the writer thread.
        await db.write("profile-on", lambda tx: db_profile.enable())
        loop_profile.enable()
    batches, jobs = stats.batches, stats.jobs
    job_s, commit_s = stats.job_seconds, stats.commit_seconds
    measuring = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.perf_counter() - started
    batch_count, job_count = stats.batches - batches, stats.jobs - jobs
    job_s, commit_s = stats.job_seconds - job_s, stats.commit_seconds - commit_s
    if profile:
        loop_profile.disable()
        await db.write("profile-off", lambda tx: db_profile.disable())
    stopping = True
    await asyncio.gather(*tasks)
    await db.close()
    profiles: tuple[tuple[str, str], ...] = ()
    if profile:
        profiles = (
            ("database writer thread", _top(db_profile)),
            ("event loop thread", _top(loop_profile)),
        )
    return AppendResult(
        writers=writers,
        appends=len(latencies),
        seconds=elapsed,
        mean_batch=job_count / batch_count if batch_count else 0.0,
        job_us=job_s / job_count * 1e6 if job_count else 0.0,
        commit_us=commit_s / job_count * 1e6 if job_count else 0.0,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        profiles=profiles,
    )


# -- 2. a large ledger and proofs ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildResult:
    entries: int
    seconds: float
    file_bytes: int
    root: bytes


def build_ledger(path: Path, entries: int, keys: OrgKeys, *, chunk: int = 20_000) -> BuildResult:
    """Write `entries` valid ledger rows and signed checkpoints in one transaction."""
    started = time.perf_counter()
    conn = open_sync(path)  # creates the schema through the hub's own migrations
    conn.execute("PRAGMA synchronous=OFF")  # a bulk load: durability is not measured here
    origin = origin_for(keys.org)
    tree = CompactTree()
    types = ("dat-request", "dat-answer", "dat-answer", "case-registered", "case-closed")
    try:
        conn.execute("BEGIN")
        for start in range(0, entries, chunk):
            end = min(entries, start + chunk)
            salts = os.urandom(32 * (end - start))
            rows = []
            for i in range(start, end):
                entry_type = types[i % len(types)]
                now = BASE_TIME_MS + i * 7
                body, _ = _step_body(i % 1000, i)
                stored = canonical_json({"type": entry_type, "time_ms": now, **body})
                salt = salts[(i - start) * 32 : (i - start + 1) * 32]
                data = leaf_data(i, entry_type, now, commitment_of(salt, stored))
                digest = leaf_hash(data)
                tree.append(digest)
                rows.append((i, entry_type, now, data, digest, stored, salt))
            conn.executemany(
                "INSERT INTO ledger (idx, type, time_ms, leaf_data, leaf_hash, body, salt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if end % CHECKPOINT_EVERY == 0 or end == entries:
                root = tree.root()
                when = BASE_TIME_MS + end * 7 + 500
                note = sign_checkpoint(keys, Checkpoint(origin, end, root, when))
                ledger_store.insert_checkpoint(
                    conn, StoredCheckpoint(end, when, root, note, tree.to_bytes())
                )
            if end % CHECKPOINT_EVERY == 0:
                print(f"  built {end:,} / {entries:,} entries", file=sys.stderr, flush=True)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return BuildResult(entries, time.perf_counter() - started, path.stat().st_size, tree.root())


@dataclass(frozen=True, slots=True)
class ProofResult:
    size: int
    start_s: float
    service_ms: tuple[float, float, float]  # p50, p99, max
    pure_ms: tuple[float, float, float]
    pure_warm_s: float


async def _settle_warmup() -> None:
    """`LedgerService.start` warms its subtree cache in a background task; wait for it."""
    for task in asyncio.all_tasks():
        if task.get_name() == "ledger-cache-warm":
            await task


def _summary(latencies: Sequence[float]) -> tuple[float, float, float]:
    return (
        _percentile(latencies, 0.50) * 1000,
        _percentile(latencies, 0.99) * 1000,
        max(latencies) * 1000,
    )


async def proof_latency(path: Path, keys: OrgKeys, count: int, seed: int) -> ProofResult:
    rng = random.Random(seed)
    db = Database(path)
    await db.open()
    try:
        started = time.perf_counter()
        ledger = LedgerService(db, keys, SystemClock())
        await ledger.start()
        await _settle_warmup()
        start_s = time.perf_counter() - started
        head = ledger.head
        assert head is not None
        size, root = head.size, head.root
        indexes = [rng.randrange(size) for _ in range(count)]
        for i in indexes[:20]:  # the right edge of the tree is never cached: warm the pages
            await ledger.inclusion(i, size)
        service: list[float] = []
        proofs = []
        for i in indexes:
            t = time.perf_counter()
            proof = await ledger.inclusion(i, size)
            service.append(time.perf_counter() - t)
            proofs.append(proof)
    finally:
        await db.close()
    for i, proof in zip(indexes, proofs, strict=True):
        path_hashes = [bytes.fromhex(p) for p in proof["path"]]
        assert verify_inclusion(i, size, bytes.fromhex(proof["leaf_hash"]), path_hashes, root)

    conn = open_sync(path)
    try:
        source = LedgerHashSource(conn)
        cache = SubtreeCache()
        t = time.perf_counter()
        for i in range(0, size, max(1, size // 64)):  # one cold proof per region warms it
            inclusion_proof(i, size, source, cache)
        pure_warm_s = time.perf_counter() - t
        pure: list[float] = []
        for i in indexes:
            t = time.perf_counter()
            inclusion_proof(i, size, source, cache)
            pure.append(time.perf_counter() - t)
    finally:
        conn.close()
    return ProofResult(size, start_s, _summary(service), _summary(pure), pure_warm_s)


# -- the table ---------------------------------------------------------------------------------


def _row(metric: str, value: str, target: str = "", ok: bool | None = None) -> str:
    verdict = "" if ok is None else ("yes" if ok else "MISSED")
    return f"{metric:<46} {value:>26}  {target:<12} {verdict}"


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window per level")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--writers", default="1,16,256")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--batch-max", type=int, default=512, help="Database batch_max ([hub] write_batch_max)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the largest level")
    parser.add_argument("--skip-appends", action="store_true")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--dir", type=Path, help="work here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the database files")
    args = parser.parse_args(argv)
    levels = [int(w) for w in args.writers.split(",") if w]
    work = args.dir or Path(tempfile.mkdtemp(prefix="zvh-bench-ledger-"))
    work.mkdir(parents=True, exist_ok=True)
    keys = OrgKeys.generate(HUB)
    lines: list[str] = []
    profiles: tuple[tuple[str, str], ...] = ()
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, files in {work}")
        if not args.skip_appends:
            for writers in levels:
                path = work / f"appends-{writers}.sqlite3"
                profile = args.profile and writers == max(levels)
                result = asyncio.run(
                    append_rate(
                        path,
                        writers,
                        args.seconds,
                        args.warmup,
                        profile=profile,
                        batch_max=args.batch_max,
                    )
                )
                profiles = result.profiles or profiles
                target_ok = result.rate >= TARGET_APPENDS if writers == 256 else None
                lines.append(
                    _row(
                        f"durable appends/s, {writers} writer{'s' if writers > 1 else ''}",
                        f"{result.rate:,.0f}",
                        f">= {TARGET_APPENDS:,}" if writers == 256 else "",
                        target_ok,
                    )
                )
                lines.append(
                    _row(
                        "    per commit; us/append in job+COMMIT; ack p50/p99",
                        f"{result.mean_batch:,.0f}; {result.job_us:,.0f}+{result.commit_us:,.0f}; "
                        f"{result.p50_ms:.1f}/{result.p99_ms:.1f} ms",
                    )
                )
                print(lines[-2], flush=True)
                if not args.keep:
                    for file in work.glob(path.name + "*"):
                        file.unlink()
            if 256 in levels:
                path = work / "appends-minimal.sqlite3"
                result = asyncio.run(
                    append_rate(
                        path,
                        256,
                        args.seconds,
                        args.warmup,
                        batch_max=args.batch_max,
                        make_body=_minimal_body,
                    )
                )
                lines.append(
                    _row(
                        "    same, minimal body {n} and 1 actor",
                        f"{result.rate:,.0f}",
                        f">= {TARGET_APPENDS:,}",
                        result.rate >= TARGET_APPENDS,
                    )
                )
                print(lines[-1], flush=True)
                if not args.keep:
                    for file in work.glob(path.name + "*"):
                        file.unlink()
        if not args.skip_large:
            path = work / "large.sqlite3"
            built = build_ledger(path, args.entries, keys)
            lines.append(
                _row(
                    f"build {built.entries:,} entries (bulk insert)",
                    f"{built.seconds:.1f} s, {built.file_bytes / 2**20:,.0f} MiB",
                )
            )
            proofs = asyncio.run(proof_latency(path, keys, args.proofs, args.seed))
            lines.append(
                _row("LedgerService start (restore + cache warm)", f"{proofs.start_s:.2f} s")
            )
            p50, p99, worst = proofs.service_ms
            lines.append(
                _row(
                    f"inclusion proof p50 / p99 @ {proofs.size:,} (service)",
                    f"{p50:.2f} / {p99:.2f} ms",
                    f"p99 < {TARGET_PROOF_P99_MS:g} ms",
                    p99 < TARGET_PROOF_P99_MS,
                )
            )
            lines.append(_row("    max", f"{worst:.2f} ms"))
            p50, p99, worst = proofs.pure_ms
            lines.append(
                _row(
                    "inclusion proof p50 / p99 (pure, warm cache)",
                    f"{p50:.2f} / {p99:.2f} ms",
                    f"p99 < {TARGET_PROOF_P99_MS:g} ms",
                    p99 < TARGET_PROOF_P99_MS,
                )
            )
            report, seconds = _timed(lambda: verify_file(path, keys.signing_key, HUB))
            assert report.ok, report
            assert report.entries == args.entries
            lines.append(
                _row(
                    f"verify_file, {report.entries:,} entries",
                    f"{seconds:.1f} s ({report.entries / seconds:,.0f}/s)",
                    f"< {TARGET_VERIFY_S:g} s",
                    seconds < TARGET_VERIFY_S,
                )
            )
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(_row("metric", "value", "target", None) + "ok")
    print("-" * 96)
    for line in lines:
        print(line)
    for name, text in profiles:
        print(f"\n== cProfile, {name} (256-writer window, by tottime) ==")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
