"""Benchmark of the review list and its filters at up to a million ledger entries.

    .venv/bin/python bench/review.py [--entries N] [--runs R] [--dir DIR]
    .venv/bin/python bench/review.py --http [--entries N] [--runs R] [--dir DIR]

Builds N synthetic rows (default 100,000; the acceptance figure of issue 6 is at
`--entries 1000000`) straight into a migrated hub database's `review_entries` and
`ledger_actors` tables. The ledger rows themselves are not needed by the list, and a
million real appends would cost minutes of hashing; a real hub fills
`review_entries` from the ledger after the fact.

- Default (storage layer): times each filter of `/api/v1/review/exchanges` as the
  query the hub runs, first page and a deep page (keyset `before` at half the rows).
- `--http` (acceptance 3): the rows go into the database of a hub made by
  `init-hub`, after its own ledger entries (so the hub's later entries, such as the
  reports below, are not indexed: the list shows only synthetic rows). The hub runs
  as `python -m gateway serve`, a privacy officer logs in, and each filter is asked
  for, one request at a time, as the JSON API and as the HTML page; each answer
  includes the ledger entry that records the report (a durable write).

Prints p50 and p95 in milliseconds. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from procs import REPO, free_port, wait_ready

from gateway.clock import SystemClock
from gateway.config import load_settings
from gateway.services import admin, review_auth
from gateway.services.review import parse_filter
from gateway.storage.database import Tx, migrate
from gateway.storage.review_store import list_entries

TYPES = ("dat-request", "dat-answer", "wat-request", "wat-answer", "denied", "known-check")
THEMES = ("huiselijk-geweld", "verward-gedrag", "radicalisering", "zsm-advies")
T0 = 1_767_225_600_000  # 2026-01-01 UTC; one entry a second from there
QUERIES: tuple[dict[str, str], ...] = (
    {},
    {"type": "wat"},
    {"org": "org-3"},
    {"case": "C-1234"},
    {"theme": "radicalisering", "org": "org-7"},
    {"decision": "refuse"},
    {"code": "category-not-allowed", "org": "org-5"},
    {"from": "2026-01-04", "until": "2026-01-05"},
    {"from": "2026-01-02", "until": "2026-01-07"},
    {"org": "org-3", "from": "2026-01-02", "until": "2026-01-02"},
    {"case": "C-1234", "from": "2026-01-01", "until": "2026-01-11"},
    {"theme": "zsm-advies", "from": "2026-01-03"},
    {"org": "org-9", "type": "denied", "until": "2026-01-06"},
)
OFFICER, PASSWORD = "fg-bench", "Bench-wachtwoord-123"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def seed(conn: sqlite3.Connection, n: int, first: int = 0) -> None:
    """n synthetic review rows with ledger indexes first .. first + n - 1."""
    conn.execute("PRAGMA foreign_keys=OFF")
    rnd = random.Random(6)
    orgs = [f"org-{i}" for i in range(40)]
    conn.execute("BEGIN")
    chunk = 100_000
    for start in range(0, n, chunk):
        rows = []
        actors = []
        for i in range(start, min(n, start + chunk)):
            kind = rnd.choice(TYPES)
            org, other = rnd.choice(orgs), rnd.choice(orgs)
            refuse = kind == "wat-answer" and rnd.random() < 0.1
            rows.append(
                (
                    first + i,
                    kind,
                    T0 + i * 1000,
                    f"x-{i // 3}",
                    f"C-{i // 50}",
                    rnd.choice(THEMES),
                    org,
                    other,
                    "refuse" if refuse else None,
                    "category-not-allowed" if kind == "denied" else None,
                )
            )
            actors += [(first + i, org), (first + i, other)]
        conn.executemany("INSERT INTO review_entries VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT OR IGNORE INTO ledger_actors (idx, org) VALUES (?, ?)", actors)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")


def build(path: Path, n: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    seed(conn, n)
    return conn


def label_of(query: dict[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in query.items()) or "(none)"


def summary(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), statistics.quantiles(times, n=20, method="inclusive")[18]


def storage_mode(args: argparse.Namespace, tmp: Path) -> None:
    began = time.perf_counter()
    conn = build(tmp / "review.sqlite3", args.entries)
    print(f"built {args.entries:,} entries in {time.perf_counter() - began:.1f} s")
    tx = Tx(conn, None)
    print(f"{'filter':58} {'page':>6} {'p50 ms':>8} {'p95 ms':>8} {'rows':>5}")
    for query in QUERIES:
        flt = parse_filter(query)
        for before in (None, args.entries // 2):
            times = []
            rows = []
            for _ in range(args.runs):
                t = time.perf_counter()
                rows = list_entries(tx, flt, before=before, limit=51)
                times.append((time.perf_counter() - t) * 1000)
            p50, p95 = summary(times)
            page = "first" if before is None else "deep"
            print(f"{label_of(query):58} {page:>6} {p50:8.2f} {p95:8.2f} {len(rows):5d}")
    conn.close()


# -- over HTTP, against a hub process -------------------------------------------------


async def log_in(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url + "/review/login") as r:
        found = _CSRF.search(await r.text())
    assert found is not None
    form = {"csrf": found.group(1), "name": OFFICER, "password": PASSWORD}
    async with session.post(url + "/review/login", data=form, allow_redirects=False) as r:
        if r.status != 303:
            raise SystemExit(f"login failed: {r.status}")


async def time_http(url: str, runs: int, deep_before: int) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await log_in(session, url)
        print(
            f"{'filter':52} {'page':>5} {'kind':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"
            f" {'rows':>5}"
        )
        worst = 0.0
        for query in QUERIES:
            for before in (None, deep_before):
                params = dict(query, **({} if before is None else {"before": str(before)}))
                for kind, path in (
                    ("api", "/api/v1/review/exchanges"),
                    ("html", "/review/exchanges"),
                ):
                    target = f"{url}{path}?{urlencode(params)}"
                    times = []
                    body = b""
                    for _ in range(runs):
                        t = time.perf_counter()
                        async with session.get(target, allow_redirects=False) as r:
                            body = await r.read()
                            if r.status != 200:
                                raise SystemExit(f"{target}: {r.status}")
                        times.append((time.perf_counter() - t) * 1000)
                    if kind == "api":
                        rows = len(json.loads(body)["items"])
                    else:
                        rows = body.count(b"<tr>") - 1  # the header row
                    p50, p95 = summary(times)
                    worst = max(worst, p95)
                    page = "first" if before is None else "deep"
                    print(
                        f"{label_of(query):52} {page:>5} {kind:>4} {p50:8.1f} {p95:8.1f}"
                        f" {max(times):8.1f} {rows:5d}"
                    )
        verdict = "under" if worst < 500 else "NOT under"
        print(f"worst p95 {worst:.1f} ms: {verdict} the 500 ms of issue 6")


def http_mode(args: argparse.Namespace, tmp: Path) -> None:
    clock = SystemClock()
    port = free_port()
    paths = admin.init_hub(tmp / "hub", "hub-bench", clock, port=port)
    settings = load_settings(paths.config)
    review_auth.add_user(settings, clock, name=OFFICER, role="privacy-officer", password=PASSWORD)
    began = time.perf_counter()
    conn = sqlite3.connect(settings.node.database, isolation_level=None)
    first = int(conn.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM ledger").fetchone()[0])
    seed(conn, args.entries, first)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(f"seeded {args.entries:,} entries in {time.perf_counter() - began:.1f} s")
    url = f"http://127.0.0.1:{port}"
    log = (tmp / "hub.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(paths.config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        cwd=REPO,
    )
    try:
        wait_ready(proc, url, timeout_s=60.0)
        print(f"hub pid {proc.pid} ready on {url}; load average {os.getloadavg()[0]:.2f}")
        asyncio.run(time_http(url, args.runs, first + args.entries // 2))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--dir", type=Path)
    p.add_argument("--http", action="store_true", help="time over HTTP against a hub process")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        (http_mode if args.http else storage_mode)(args, Path(tmp))


if __name__ == "__main__":
    main()
