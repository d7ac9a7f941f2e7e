"""SQL of the national check: the hub's index outbox, the index's registrations and
the pseudonymiser's usage counts (migration 0004).

Small functions over a `Tx`, composed by the services inside their storage jobs.
Pids are stored as the hub got them (hex, beside `case_subjects`) at hubs, and as
raw 64-byte blobs at the index, whose table is keyed on them. Must not decide
anything (leases, backoff and who may register are the callers' business).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.storage.database import Tx

# -- hub: the index outbox --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxRow:
    pid: str
    status: str
    since_ms: int
    closed_ms: int | None
    lease_until_ms: int | None
    attempts: int


def outbox_open(tx: Tx, pids: Iterable[str], now_ms: int) -> None:
    """Pids of a case registered now: the index must hear that they are open here.

    A pid that is already open here keeps its `since_ms` (the earliest open case);
    one that was closed is open again from now.
    """
    tx.conn.executemany(
        "INSERT INTO index_outbox (pid, status, since_ms, pending, attempts, next_try_ms)"
        " VALUES (?, 'open', ?, 1, 0, 0) ON CONFLICT (pid) DO UPDATE SET"
        " since_ms = CASE WHEN index_outbox.status = 'open' THEN index_outbox.since_ms"
        "  ELSE excluded.since_ms END,"
        " status = 'open', closed_ms = NULL, pending = 1, attempts = 0, next_try_ms = 0",
        [(pid, now_ms) for pid in pids],
    )


def outbox_close_case(tx: Tx, case_ref: str, now_ms: int) -> int:
    """The case was closed: its pids that no other open case holds become closed."""
    cur = tx.conn.execute(
        "UPDATE index_outbox SET status = 'closed', closed_ms = :now, pending = 1,"
        " attempts = 0, next_try_ms = 0"
        " WHERE status = 'open' AND pid IN (SELECT pid FROM case_subjects WHERE case_ref = :case)"
        " AND NOT EXISTS (SELECT 1 FROM case_subjects s JOIN cases c ON c.case_ref = s.case_ref"
        "  WHERE s.pid = index_outbox.pid AND c.status = 'open' AND c.case_ref != :case)",
        {"now": now_ms, "case": case_ref},
    )
    return cur.rowcount


def outbox_reconcile(tx: Tx, now_ms: int) -> int:
    """Bring the outbox in line with the cases (at start: cases registered while the
    hub had no [national] section, or closed then). Returns the rows changed."""
    opened = tx.conn.execute(
        "INSERT INTO index_outbox (pid, status, since_ms, pending, attempts, next_try_ms)"
        " SELECT s.pid, 'open', MIN(c.created_ms), 1, 0, 0 FROM case_subjects s"
        " JOIN cases c ON c.case_ref = s.case_ref WHERE c.status = 'open' GROUP BY s.pid"
        " ON CONFLICT (pid) DO UPDATE SET status = 'open', since_ms = excluded.since_ms,"
        " closed_ms = NULL, pending = 1, attempts = 0, next_try_ms = 0"
        " WHERE index_outbox.status = 'closed'"
    ).rowcount
    closed = tx.conn.execute(
        "UPDATE index_outbox SET status = 'closed', closed_ms = ?, pending = 1, attempts = 0,"
        " next_try_ms = 0 WHERE status = 'open' AND NOT EXISTS (SELECT 1 FROM case_subjects s"
        " JOIN cases c ON c.case_ref = s.case_ref"
        " WHERE s.pid = index_outbox.pid AND c.status = 'open')",
        (now_ms,),
    ).rowcount
    return max(0, opened) + max(0, closed)


def outbox_due(tx: Tx, now_ms: int, limit: int) -> list[OutboxRow]:
    rows = tx.conn.execute(
        "SELECT pid, status, since_ms, closed_ms, lease_until_ms, attempts FROM index_outbox"
        " WHERE pending = 1 AND next_try_ms <= ? ORDER BY next_try_ms LIMIT ?",
        (now_ms, limit),
    ).fetchall()
    return [OutboxRow(*r) for r in rows]


def outbox_pushed(tx: Tx, row: OutboxRow, lease_until_ms: int | None) -> None:
    """The index confirmed `row`'s state with this lease (None: it was deleted there).

    Only when the row still holds what was pushed: a case closed or registered while
    the call was under way leaves it pending, so the newer state is pushed next.
    """
    if lease_until_ms is None:
        tx.conn.execute(
            "DELETE FROM index_outbox WHERE pid = ? AND status = ? AND since_ms = ?",
            (row.pid, row.status, row.since_ms),
        )
        return
    tx.conn.execute(
        "UPDATE index_outbox SET pending = 0, attempts = 0, next_try_ms = 0, lease_until_ms = ?"
        " WHERE pid = ? AND status = ? AND since_ms = ?",
        (lease_until_ms, row.pid, row.status, row.since_ms),
    )


def outbox_failed(tx: Tx, pid: str, next_try_ms: int) -> None:
    tx.conn.execute(
        "UPDATE index_outbox SET attempts = attempts + 1, next_try_ms = ? WHERE pid = ?",
        (next_try_ms, pid),
    )


def outbox_mark_renewals(tx: Tx, renew_before_ms: int) -> int:
    """Open pids whose confirmed lease ends before `renew_before_ms` are due again."""
    return tx.conn.execute(
        "UPDATE index_outbox SET pending = 1, next_try_ms = 0 WHERE status = 'open'"
        " AND pending = 0 AND (lease_until_ms IS NULL OR lease_until_ms < ?)",
        (renew_before_ms,),
    ).rowcount


def outbox_prune(tx: Tx, now_ms: int) -> int:
    """Closed pids whose last lease has run out: the index has forgotten them too."""
    return tx.conn.execute(
        "DELETE FROM index_outbox WHERE status = 'closed' AND pending = 0 AND lease_until_ms <= ?",
        (now_ms,),
    ).rowcount


def outbox_pending(tx: Tx) -> int:
    row = tx.conn.execute("SELECT COUNT(*) FROM index_outbox WHERE pending = 1").fetchone()
    return int(row[0])


def open_since(tx: Tx, pid: str) -> int | None:
    """When the earliest open case at this hub that holds `pid` was registered."""
    row = tx.conn.execute(
        "SELECT MIN(c.created_ms) FROM case_subjects s JOIN cases c ON c.case_ref = s.case_ref"
        " WHERE s.pid = ? AND c.status = 'open'",
        (pid,),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


# -- index: registrations -----------------------------------------------------------

RegistrationRow = tuple[str, str, int, int]  # hub, status, since_ms, lease_until_ms


def index_put(
    tx: Tx,
    *,
    pid: bytes,
    hub: str,
    status: str,
    since_ms: int,
    lease_until_ms: int,
    now_ms: int,
) -> None:
    """Register, or replace the hub's registration (renewal, closure)."""
    tx.conn.execute(
        "INSERT INTO index_registrations (pid, hub, status, since_ms, lease_until_ms, updated_ms)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pid, hub) DO UPDATE SET"
        " status = excluded.status, since_ms = excluded.since_ms,"
        " lease_until_ms = excluded.lease_until_ms, updated_ms = excluded.updated_ms",
        (pid, hub, status, since_ms, lease_until_ms, now_ms),
    )


def index_delete(tx: Tx, pid: bytes, hub: str) -> bool:
    cur = tx.conn.execute("DELETE FROM index_registrations WHERE pid = ? AND hub = ?", (pid, hub))
    return cur.rowcount > 0


_LOOKUP = (
    "SELECT hub, status, since_ms, lease_until_ms FROM index_registrations"
    " WHERE pid = ? AND lease_until_ms > ? ORDER BY hub"
)


def index_lookup(tx: Tx, pid: bytes, now_ms: int) -> list[RegistrationRow]:
    """The unexpired registrations of `pid` (an expired lease is never returned)."""
    rows = tx.conn.execute(_LOOKUP, (pid, now_ms)).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


def index_prune_slice(tx: Tx, low: bytes, high: bytes | None, now_ms: int) -> int:
    """Delete expired registrations with low <= pid < high (None: to the end)."""
    if high is None:
        cur = tx.conn.execute(
            "DELETE FROM index_registrations WHERE pid >= ? AND lease_until_ms <= ?",
            (low, now_ms),
        )
    else:
        cur = tx.conn.execute(
            "DELETE FROM index_registrations WHERE pid >= ? AND pid < ? AND lease_until_ms <= ?",
            (low, high, now_ms),
        )
    return cur.rowcount


def index_bulk_put(tx: Tx, rows: Sequence[tuple[bytes, str, str, int, int, int]]) -> None:
    """(pid, hub, status, since_ms, lease_until_ms, updated_ms) rows, in one statement
    (bulk loads and benchmarks; the caller chooses the transaction size)."""
    tx.conn.executemany(
        "INSERT OR REPLACE INTO index_registrations"
        " (pid, hub, status, since_ms, lease_until_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


# -- pseudonymiser: usage and the key in use -------------------------------------------


def meta_get(tx: Tx, key: str) -> str | None:
    row = tx.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def meta_set(tx: Tx, key: str, value: str) -> None:
    tx.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def add_oprf_usage(tx: Tx, counts: Mapping[tuple[str, str], int]) -> None:
    tx.conn.executemany(
        "INSERT INTO oprf_usage (org, day, evaluations) VALUES (?, ?, ?)"
        " ON CONFLICT (org, day) DO UPDATE SET evaluations = evaluations + excluded.evaluations",
        [(org, day, n) for (org, day), n in counts.items()],
    )


def oprf_usage(tx: Tx) -> list[tuple[str, str, int]]:
    rows = tx.conn.execute("SELECT org, day, evaluations FROM oprf_usage ORDER BY day, org")
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows.fetchall()]
