"""Benchmark of the review list and its filters at a million ledger entries.

    .venv/bin/python bench/review.py [--entries N] [--runs R] [--dir DIR]

Builds N synthetic rows (default 1,000,000) straight into a migrated hub database's
`review_entries` and `ledger_actors` tables (the ledger rows themselves are not
needed by the list; a real hub fills `review_entries` from the ledger after the fact),
then times each filter of `/api/v1/review/exchanges` in the
storage layer, first page and a deep page (keyset `before` at half the ledger),
and prints p50 and p95 in milliseconds.

Not yet measured here: the same over HTTP through a running hub (acceptance 3 of
issue 6 asks for that); this is the query part of it. Not a test.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

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
    {"org": "org-3", "from": "2026-01-02", "until": "2026-01-02"},
)


def build(path: Path, n: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
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
                    i,
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
            actors += [(i, org), (i, other)]
        conn.executemany("INSERT INTO review_entries VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT OR IGNORE INTO ledger_actors (idx, org) VALUES (?, ?)", actors)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    return conn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--dir", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        began = time.perf_counter()
        conn = build(Path(tmp) / "review.sqlite3", args.entries)
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
                p95 = statistics.quantiles(times, n=20)[18]
                label = "&".join(f"{k}={v}" for k, v in query.items()) or "(none)"
                page = "first" if before is None else "deep"
                print(
                    f"{label:58} {page:>6} {statistics.median(times):8.2f} {p95:8.2f}"
                    f" {len(rows):5d}"
                )
        conn.close()


if __name__ == "__main__":
    main()
