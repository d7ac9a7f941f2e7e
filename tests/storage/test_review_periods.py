"""The review list's period filter walks the primary key between the smallest and
largest ledger index of the period (bench/review.py: a wide period went from 500 ms
to 50 ms at a million entries). It must give exactly what a plain filter gives, also
when times are not in ledger order (an offline tool's clock, a restored backup) and
when the period is empty: checked here against a brute-force filter, page by page."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from gateway.storage.database import Tx, migrate
from gateway.storage.review_store import EntryFilter, list_entries

DAY = 86_400_000
T0 = 1_767_225_600_000


def build(path: Path, seed: int) -> tuple[sqlite3.Connection, list[tuple[int, int, str]]]:
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    conn.execute("PRAGMA foreign_keys=OFF")
    rnd = random.Random(seed)
    rows = []
    for i in range(600):
        # Mostly in ledger order, with a fifth anywhere in the ten days.
        time_ms = T0 + (rnd.randrange(10 * DAY) if rnd.random() < 0.2 else i * (10 * DAY // 600))
        rows.append((i, time_ms, rnd.choice(["org-a", "org-b", "org-c"])))
    conn.executemany(
        "INSERT INTO review_entries (idx, type, time_ms, org) VALUES (?, 'dat-request', ?, ?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO ledger_actors (idx, org) VALUES (?, ?)", [(i, o) for i, _, o in rows]
    )
    return conn, rows


@pytest.mark.parametrize("seed", range(4))
def test_period_filter_equals_a_plain_filter_page_by_page(tmp_path: Path, seed: int) -> None:
    conn, rows = build(tmp_path / "r.sqlite3", seed)
    tx = Tx(conn, None)
    rnd = random.Random(100 + seed)
    periods: list[tuple[int | None, int | None]] = [(None, T0 + 3 * DAY), (T0 + 7 * DAY, None)]
    periods += [(T0 + 20 * DAY, T0 + 21 * DAY), (T0 + 2 * DAY, T0 + 2 * DAY)]  # empty
    for _ in range(6):
        a, b = sorted(rnd.randrange(-DAY, 11 * DAY) for _ in range(2))
        periods.append((T0 + a, T0 + b))
    for from_ms, until_ms in periods:
        for org in (None, "org-b"):
            expected = [
                i
                for i, t, o in sorted(rows, reverse=True)
                if (from_ms is None or t >= from_ms)
                and (until_ms is None or t < until_ms)
                and (org is None or o == org)
            ]
            flt = EntryFilter(types=("dat-request",), from_ms=from_ms, until_ms=until_ms, org=org)
            got: list[int] = []
            before = None
            while True:
                page = [r["idx"] for r in list_entries(tx, flt, before=before, limit=37)]
                got += page
                if len(page) < 37:
                    break
                before = page[-1]
            assert got == expected, (from_ms, until_ms, org)
    conn.close()
