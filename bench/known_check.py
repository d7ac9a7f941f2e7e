"""Benchmark of the national check: the pseudonymiser, the index at 10 million
registrations, and known-checks end to end through a hub.

    .venv/bin/python bench/known_check.py [--registrations N] [--seconds S]
                                          [--concurrency C] [--dir DIR] [--keep]

Sets up a national network with the national demo's own `prepare_national` (two
hubs, the pseudonymiser, the index) in a temporary folder, raises the rate limits
out of the way, and then:

1. builds N synthetic registrations (default 10 million, 30 hubs) straight into the
   index's SQLite file with `executemany` in big transactions (pids random, inserted
   in key order one first-byte bucket at a time), and times the build;
2. measures index lookups at that size in the storage layer (`index_lookup` on a
   read connection, half of them pids that are registered, half random ones);
3. runs every node as its own process (`python -m gateway serve`) and measures, with
   the client in this process:
   - pseudonym evaluations/s at the pseudonymiser (signed as a hub, batches of 1 and
     of 100 blinded elements) and through a hub (a partner's `pseudonym()`: blind,
     hub, pseudonymiser, finalize);
   - index lookups over HTTP at 10M (signed as a hub; each lookup is also a durable
     entry of the index's ledger, so it includes a group commit and its fsync);
   - known-checks/s end to end: a partner's `known_check()` to its hub, which reads
     its own cases, asks the index, records the check in its ledger and answers.

Not a test: it prints a table, with each process's CPU use over the window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from procs import REPO, free_port

from gateway.adapters.client import HubClient
from gateway.clock import SystemClock
from gateway.config import load_settings
from gateway.crypto.encoding import b64u_encode
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import blind, pid_input
from gateway.demo_national import prepare_national
from gateway.federation.client import NationalClient
from gateway.metrics import Metrics
from gateway.storage import national_store
from gateway.storage.database import Tx
from gateway.storage.offline import offline_read, open_sync

HUBS = [f"hub-regio-{i:02d}" for i in range(30)]
FAR_FUTURE_MS = 4_000_000_000_000
SAMPLE = 20_000
LIMITS = {"known_check_rate_per_minute": 1_000_000, "evaluate_rate_per_minute": 1_000_000}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- 1 and 2: the index at N registrations ---------------------------------------------


def build_index(database: Path, count: int, hubs: list[str]) -> tuple[float, list[bytes]]:
    """N registrations in key order, one first-byte bucket (of 256) per executemany;
    returns the seconds it took and a sample of the registered pids."""
    conn = open_sync(database)
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("PRAGMA synchronous=NORMAL")  # a bulk load; the node runs with FULL
    tx = Tx(conn, None)
    rng = random.Random(7)
    sample: list[bytes] = []
    started = time.perf_counter()
    per, extra = divmod(count, 256)
    now = int(time.time() * 1000)
    for bucket in range(256):
        n = per + (1 if bucket < extra else 0)
        raw = os.urandom(63 * n)
        prefix = bytes([bucket])
        pids = sorted(prefix + raw[i * 63 : (i + 1) * 63] for i in range(n))
        rows = [
            (pid, hubs[i % len(hubs)], "open", now - 86_400_000, FAR_FUTURE_MS, now)
            for i, pid in enumerate(pids)
        ]
        if bucket % 32 == 0:
            conn.execute("BEGIN")
        national_store.index_bulk_put(tx, rows)
        if bucket % 32 == 31:
            conn.execute("COMMIT")
        sample += rng.sample(pids, min(len(pids), SAMPLE // 256 + 1))
        if bucket % 32 == 31:
            done = sum(per + (1 if b < extra else 0) for b in range(bucket + 1))
            print(
                f"#   {done:>11,} registrations, {time.perf_counter() - started:6.1f} s", flush=True
            )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, sample


def store_lookups(database: Path, present: list[bytes]) -> dict[str, float]:
    absent = [os.urandom(64) for _ in present]
    probes = [p for pair in zip(present, absent, strict=True) for p in pair]
    now = int(time.time() * 1000)
    times: list[float] = []
    hits = 0
    with offline_read(database) as tx:
        for pid in probes[:2000]:  # warm the connection's page cache
            national_store.index_lookup(tx, pid, now)
        for pid in probes:
            t0 = time.perf_counter()
            found = national_store.index_lookup(tx, pid, now)
            times.append(time.perf_counter() - t0)
            hits += bool(found)
    assert hits == len(present), "every sampled pid must be found"
    return {"n": len(times), "p50": pct(times, 0.5), "p99": pct(times, 0.99), "max": max(times)}


# -- 3: the nodes as processes -----------------------------------------------------------


class Node:
    def __init__(self, name: str, config: Path, url: str, logs: Path) -> None:
        self.name, self.url = name, url
        out = (logs / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        out.close()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} not ready")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def measure(
    op: Callable[[], Awaitable[int]], seconds: float, concurrency: int, nodes: list[Node]
) -> dict[str, Any]:
    """Run `op` (returns units done) in `concurrency` loops for `seconds` after a warm-up."""
    latencies: list[float] = []
    units = 0
    errors = 0
    stop_at = 0.0

    async def loop(record: bool) -> None:
        nonlocal units, errors
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                n = await op()
            except Exception:
                errors += 1
                continue
            if record:
                latencies.append(time.perf_counter() - t0)
                units += n

    stop_at = time.monotonic() + min(2.0, seconds / 3)
    await asyncio.gather(*(loop(False) for _ in range(concurrency)))
    cpu0 = {n.name: n.cpu_s() for n in nodes}
    me0 = time.process_time()
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*(loop(True) for _ in range(concurrency)))
    wall = time.monotonic() - started
    cpu = {n.name: (n.cpu_s() - cpu0[n.name]) / wall for n in nodes}
    cpu["client"] = (time.process_time() - me0) / wall
    return {
        "rate": units / wall,
        "calls": len(latencies) / wall,
        "p50": pct(latencies, 0.5) if latencies else float("nan"),
        "p99": pct(latencies, 0.99) if latencies else float("nan"),
        "errors": errors,
        "cpu": cpu,
    }


async def run_nodes(
    prepared: dict[str, Any], present: list[bytes], args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    urls = {n["org"]: n["url"] for n in prepared["network"]["nodes"]}
    ps = Node("pseudonymiser", prepared["pseudonymiser_config"], urls["pseudonymiser-nl"], logs)
    ix = Node("index", prepared["index_config"], urls["index-nl"], logs)
    for n in (ps, ix):
        n.wait_ready()
    hubs = [Node(org, cfg, urls[org], logs) for org, cfg in prepared["hub_configs"].items()]
    for n in hubs:
        n.wait_ready()
    nodes = [ps, ix, *hubs]
    a, b = prepared["regions"]
    keys = {p["org"]: OrgKeys.load(p["key_file"]) for p in prepared["network"]["partners"]}
    hub_a_keys = OrgKeys.load(load_settings(prepared["hub_configs"][a.hub]).node.key_file)
    national = NationalClient(
        hub_a_keys,
        SystemClock(),
        Metrics("bench"),
        pseudonymiser_url=urls["pseudonymiser-nl"],
        index_url=urls["index-nl"],
        timeout_s=30,
    )
    zvh_a = HubClient(urls[a.hub], keys[a.zvh])
    om_b = HubClient(urls[b.hub], keys[b.om])
    out: dict[str, Any] = {}
    try:
        for client in (zvh_a, om_b):
            await client.accede()
        elements = [b64u_encode(blind(pid_input("230857103", "19800203"))[1]) for _ in range(100)]

        async def evaluate_1() -> int:
            return len(await national.evaluate(elements[:1]))

        async def evaluate_100() -> int:
            return len(await national.evaluate(elements))

        async def pseudonym() -> int:
            await zvh_a.pseudonym("230857103", "19800203")
            return 1

        c = args.concurrency
        print("# pseudonymiser: batches of 1", flush=True)
        out["eval_1"] = await measure(evaluate_1, args.seconds, c, [ps])
        print("# pseudonymiser: batches of 100", flush=True)
        out["eval_100"] = await measure(evaluate_100, args.seconds, 4, [ps])
        print("# pseudonyms through a hub", flush=True)
        out["pseudonym"] = await measure(pseudonym, args.seconds, c, [ps, hubs[0]])

        rng = random.Random(11)

        async def lookup_seq() -> int:
            pid = rng.choice(present) if rng.random() < 0.5 else os.urandom(64)
            await national.lookup(pid.hex())
            return 1

        print("# index lookups over HTTP, one at a time", flush=True)
        out["lookup_1"] = await measure(lookup_seq, args.seconds, 1, [ix])
        print(f"# index lookups over HTTP, {c} concurrent", flush=True)
        out["lookup_c"] = await measure(lookup_seq, args.seconds, c, [ix])

        # Known-checks: half of the pids are registered at the index (one match each),
        # a few are in an open case at hub A, the rest are known nowhere.
        own = [await zvh_a.pseudonym("230857103", "19800203")]
        await zvh_a.register_case("BENCH-1", "huiselijk-geweld", [("S1", own[0])], [])
        pool = [p.hex() for p in present[:5000]] + [os.urandom(64).hex() for _ in range(5000)]

        async def known_check() -> int:
            res = await om_b.known_check(rng.choice(pool), "zsm-advies")
            if res["unreachable"]:
                raise RuntimeError("index unreachable")
            return 1

        for conc in sorted({c, 2 * c}):
            print(f"# known-checks end to end, {conc} concurrent", flush=True)
            out[f"known_{conc}"] = await measure(known_check, args.seconds, conc, nodes)
    finally:
        for client in (zvh_a, om_b):
            await client.close()
        await national.close()
        for n in reversed(nodes):
            n.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registrations", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="zvh-bench-national-"))
    logs = base / "logs"
    try:
        prepared = prepare_national(
            base / "net",
            0,
            hubs=2,
            national={"timeout_s": 10.0, **LIMITS},
            port_of=lambda _: free_port(),
        )
        logs.mkdir()
        for config, section in (
            (prepared["pseudonymiser_config"], "pseudonymiser"),
            (prepared["index_config"], "index"),
        ):
            text = config.read_text()
            config.write_text(
                text.replace(
                    "rate_limit_per_minute = 6000 ", "rate_limit_per_minute = 1000000 "
                ).replace("rate_limit_per_minute = 60000 ", "rate_limit_per_minute = 1000000 ")
            )
            settings = load_settings(config)
            limits = getattr(settings, section)
            assert limits is not None
            assert limits.rate_limit_per_minute == 1_000_000
        database = load_settings(prepared["index_config"]).node.database
        hubs = [r.hub for r in prepared["regions"]] + HUBS[2:]
        print(f"# building {args.registrations:,} index registrations", flush=True)
        build_s, present = build_index(database, args.registrations, hubs)
        size_mb = database.stat().st_size / 1e6
        print("# index lookups in the storage layer", flush=True)
        store = store_lookups(database, present)
        results = asyncio.run(run_nodes(prepared, present, args, logs))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"# kept {base}")
    report(args, build_s, size_mb, store, results)
    return 0


def report(
    args: argparse.Namespace,
    build_s: float,
    size_mb: float,
    store: dict[str, float],
    results: dict[str, Any],
) -> None:
    ms = 1000.0
    n = args.registrations
    print()
    print(f"national check benchmark ({os.cpu_count()} cores; client, hubs, pseudonymiser and")
    print(f"index on this machine; {args.seconds:.0f} s windows)")
    print()
    head = f"{'measure':<58} {'result':>14} {'p50 ms':>8} {'p99 ms':>8}"
    print(head)
    print("-" * len(head))
    print(f"{f'index build, {n:,} registrations':<58} {build_s:>12.1f} s")
    print(f"{'index file size':<58} {size_mb:>11.0f} MB")
    print(
        f"{f'index lookup, storage layer, at {n:,}':<58} {store['n']:>10,} n"
        f" {store['p50'] * ms:>8.3f} {store['p99'] * ms:>8.3f}"
    )
    rows = [
        ("eval_1", "pseudonymiser evaluations/s (batches of 1, signed hub)"),
        ("eval_100", "pseudonymiser evaluations/s (batches of 100)"),
        ("pseudonym", "pseudonyms/s through a hub (blind, hub, OPRF, finalize)"),
        ("lookup_1", f"index lookups/s over HTTP at {n:,}, sequential"),
        ("lookup_c", f"index lookups/s over HTTP, {args.concurrency} concurrent"),
    ]
    rows += [
        (k, f"known-checks/s end to end, {k.split('_')[1]} concurrent")
        for k in results
        if k.startswith("known_")
    ]
    for key, label in rows:
        r = results[key]
        errors = f"  ({r['errors']} errors)" if r["errors"] else ""
        print(
            f"{label:<58} {r['rate']:>12.0f}/s {r['p50'] * ms:>8.2f} {r['p99'] * ms:>8.2f}{errors}"
        )
    print()
    print("CPU (cores busy) per process over each window:")
    for key, label in rows:
        cpu = results[key]["cpu"]
        print(f"  {label[:40]:<40} " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    known = [results[k]["rate"] for k in results if k.startswith("known_")]
    print()
    print("targets:")
    print(f"  index lookup p99 < 5 ms at 10M (storage layer): {store['p99'] * ms:.3f} ms")
    print(f"  index build of 10M < 10 min:                    {build_s / 60:.1f} min")
    print(f"  known-checks >= 500/s end to end:               {max(known):.0f}/s")


if __name__ == "__main__":
    raise SystemExit(main())
