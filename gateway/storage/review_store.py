"""SQL of the review pages: the people who log in, and reads over the ledger index.

`review_entries` (migration 0005) is filled after the fact from the ledger table
(`ledger_store.index_for_review`, migration 0007), so
filters and keyset paging (by ledger index, newest first) never scan the ledger's
bodies. Must not: write the ledger (logins and reports are appended by the service
through `Tx.append_ledger`), or decide anything (no lockout policy here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.storage.database import Tx

# -- users ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    role: str
    password_hash: str
    failed_logins: int
    locked_until_ms: int | None
    disabled: bool


def insert_user(tx: Tx, *, name: str, role: str, password_hash: str, now_ms: int) -> bool:
    """Add a user, or replace the password and role of an existing one (and unlock it).
    Returns whether the user is new."""
    existed = get_user(tx, name) is not None
    tx.conn.execute(
        "INSERT INTO users (name, role, password_hash, created_ms) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET role = excluded.role,"
        " password_hash = excluded.password_hash, failed_logins = 0, locked_until_ms = NULL",
        (name, role, password_hash, now_ms),
    )
    return not existed


def get_user(tx: Tx, name: str) -> UserRow | None:
    row = tx.conn.execute(
        "SELECT name, role, password_hash, failed_logins, locked_until_ms, disabled_ms"
        " FROM users WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        return None
    return UserRow(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        int(row[3]),
        None if row[4] is None else int(row[4]),
        row[5] is not None,
    )


def set_login_state(tx: Tx, name: str, *, failed: int, locked_until_ms: int | None) -> None:
    tx.conn.execute(
        "UPDATE users SET failed_logins = ?, locked_until_ms = ? WHERE name = ?",
        (failed, locked_until_ms, name),
    )


# -- the ledger index --------------------------------------------------------------

ENTRY_COLUMNS = (
    "idx",
    "type",
    "time_ms",
    "exchange_id",
    "case_ref",
    "theme",
    "org",
    "counterpart",
    "decision",
    "code",
)


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Every field optional; `types` empty means any of `default_types`."""

    types: tuple[str, ...] = ()
    from_ms: int | None = None
    until_ms: int | None = None
    org: str | None = None
    case_ref: str | None = None
    theme: str | None = None
    decision: str | None = None
    code: str | None = None
    exchange_id: str | None = None


def list_entries(
    tx: Tx, flt: EntryFilter, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first, at most `limit`, below ledger index `before` (keyset paging)."""
    where: list[str] = []
    args: list[Any] = []
    if flt.types:
        where.append(f"r.type IN ({','.join('?' * len(flt.types))})")
        args.extend(flt.types)
    for column, value in (
        ("case_ref", flt.case_ref),
        ("theme", flt.theme),
        ("decision", flt.decision),
        ("code", flt.code),
        ("exchange_id", flt.exchange_id),
    ):
        if value is not None:
            where.append(f"r.{column} = ?")
            args.append(value)
    if flt.from_ms is not None or flt.until_ms is not None:
        # A period: the time index gives the smallest and largest ledger index in it
        # (one index-only scan), and the list walks the primary key between them,
        # newest first. Left to itself SQLite reads the period through the time index
        # and sorts all its rows by idx: 400-550 ms for five days of a million
        # entries. The bounds are exact whatever the order of times in the ledger;
        # `+` keeps the time terms from steering the plan back to the time index.
        lo, hi = tx.conn.execute(
            "SELECT MIN(idx), MAX(idx) FROM review_entries WHERE time_ms >= ? AND time_ms < ?",
            (
                -(2**62) if flt.from_ms is None else flt.from_ms,
                2**62 if flt.until_ms is None else flt.until_ms,
            ),
        ).fetchone()
        if lo is None:
            return []
        where.append("r.idx BETWEEN ? AND ?")
        args += [lo, hi]
    if flt.from_ms is not None:
        where.append("+r.time_ms >= ?")
        args.append(flt.from_ms)
    if flt.until_ms is not None:
        where.append("+r.time_ms < ?")
        args.append(flt.until_ms)
    if flt.org is not None:
        # ledger_actors' key is (org, idx): one descent, then a walk in index order.
        where.append("r.idx IN (SELECT idx FROM ledger_actors WHERE org = ?)")
        args.append(flt.org)
    if before is not None:
        where.append("r.idx < ?")
        args.append(before)
    sql = f"SELECT {', '.join('r.' + c for c in ENTRY_COLUMNS)} FROM review_entries r"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY r.idx DESC LIMIT ?"
    args.append(limit)
    rows = tx.conn.execute(sql, args).fetchall()
    return [dict(zip(ENTRY_COLUMNS, r, strict=True)) for r in rows]


def exchange_steps(tx: Tx, exchange_id: str) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Every ledger entry of one exchange, oldest first, with its body (None: purged)."""
    rows = tx.conn.execute(
        f"SELECT {', '.join('r.' + c for c in ENTRY_COLUMNS)}, l.body FROM review_entries r"
        " JOIN ledger l ON l.idx = r.idx WHERE r.exchange_id = ? ORDER BY r.idx",
        (exchange_id,),
    ).fetchall()
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for r in rows:
        entry = dict(zip(ENTRY_COLUMNS, r[:-1], strict=True))
        out.append((entry, None if r[-1] is None else json.loads(bytes(r[-1]))))
    return out


def entry_body(tx: Tx, index: int) -> dict[str, Any] | None:
    row = tx.conn.execute("SELECT body FROM ledger WHERE idx = ?", (index,)).fetchone()
    if row is None or row[0] is None:
        return None
    body: dict[str, Any] = json.loads(bytes(row[0]))
    return body


# -- members --------------------------------------------------------------------------


def organisations(tx: Tx) -> list[dict[str, Any]]:
    rows = tx.conn.execute(
        "SELECT org, role, domain, name, status FROM organisations ORDER BY org"
    ).fetchall()
    keys = ("org", "role", "domain", "name", "status")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def accessions(tx: Tx) -> list[dict[str, Any]]:
    rows = tx.conn.execute(
        "SELECT a.protocol_id, p.version, a.org, a.signed_at_ms, a.revoked_ms,"
        " p.valid_from_ms, p.valid_until_ms FROM accessions a"
        " JOIN protocols p ON p.protocol_id = a.protocol_id ORDER BY p.version, a.org"
    ).fetchall()
    keys = (
        "protocol_id",
        "version",
        "org",
        "signed_at_ms",
        "revoked_ms",
        "valid_from_ms",
        "valid_until_ms",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def declarations(tx: Tx) -> list[dict[str, Any]]:
    rows = tx.conn.execute(
        "SELECT declaration_id, org, case_ref, signer_role, valid_from_ms, valid_until_ms,"
        " revoked_ms FROM declarations ORDER BY org, case_ref, declaration_id"
    ).fetchall()
    keys = (
        "declaration_id",
        "org",
        "case_ref",
        "signer_role",
        "valid_from_ms",
        "valid_until_ms",
        "revoked_ms",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def protocols(tx: Tx) -> list[dict[str, Any]]:
    rows = tx.conn.execute(
        "SELECT protocol_id, version, title, valid_from_ms, valid_until_ms FROM protocols"
        " ORDER BY version"
    ).fetchall()
    keys = ("protocol_id", "version", "title", "valid_from_ms", "valid_until_ms")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# -- refusals -------------------------------------------------------------------------


def refusal_counts(tx: Tx) -> list[dict[str, Any]]:
    """Denials by the hub (by code) and refusals by holders (code 'refuse'), counted
    per code, organisation, theme and month (UTC)."""
    rows = tx.conn.execute(
        "SELECT COALESCE(code, 'refuse'), org, theme,"
        " strftime('%Y-%m', time_ms / 1000, 'unixepoch') AS month, COUNT(*)"
        " FROM review_entries WHERE code IS NOT NULL"
        " OR (type = 'wat-answer' AND decision = 'refuse')"
        " GROUP BY 1, 2, 3, 4 ORDER BY 4 DESC, 1, 2, 3"
    ).fetchall()
    keys = ("code", "org", "theme", "month", "count")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def refusals_with_basis(
    tx: Tx, *, before: int | None, limit: int
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Refusals and wat-request denials, newest first, with the legal basis the request
    carried: a refused answer's basis is its wat-request's, a denial carries its own."""
    args: list[Any] = []
    sql = (
        f"SELECT {', '.join('r.' + c for c in ENTRY_COLUMNS)},"
        " COALESCE((SELECT lw.body FROM review_entries w JOIN ledger lw ON lw.idx = w.idx"
        "   WHERE w.exchange_id = r.exchange_id AND w.type = 'wat-request' LIMIT 1), l.body)"
        " FROM review_entries r JOIN ledger l ON l.idx = r.idx"
        " WHERE ((r.type = 'wat-answer' AND r.decision = 'refuse')"
        "   OR (r.type = 'denied' AND r.code != 'legal-basis-missing'"
        "       AND json_extract(CAST(l.body AS TEXT), '$.action') = 'wat-request'))"
    )
    if before is not None:
        sql += " AND r.idx < ?"
        args.append(before)
    sql += " ORDER BY r.idx DESC LIMIT ?"
    args.append(limit)
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for r in tx.conn.execute(sql, args).fetchall():
        entry = dict(zip(ENTRY_COLUMNS, r[:-1], strict=True))
        basis_body = None if r[-1] is None else json.loads(bytes(r[-1]))
        out.append((entry, basis_body))
    return out


# -- subject access (GDPR art. 15) ---------------------------------------------------


def subject_entries(tx: Tx, pid: str) -> list[tuple[dict[str, Any], dict[str, Any], int | None]]:
    """Every ledger entry about the subject with this pid, oldest first: entries of the
    subject's cases whose body names the subject's `subject_ref` in that case, with the
    case's closing time (for retention)."""
    pairs = tx.conn.execute(
        "SELECT s.case_ref, s.subject_ref, c.closed_ms FROM case_subjects s"
        " JOIN cases c ON c.case_ref = s.case_ref WHERE s.pid = ? ORDER BY s.case_ref",
        (pid,),
    ).fetchall()
    out: list[tuple[dict[str, Any], dict[str, Any], int | None]] = []
    for case_ref, subject_ref, closed_ms in pairs:
        rows = tx.conn.execute(
            f"SELECT {', '.join('r.' + c for c in ENTRY_COLUMNS)}, l.body FROM review_entries r"
            " JOIN ledger l ON l.idx = r.idx WHERE r.case_ref = ? AND l.body IS NOT NULL"
            " AND json_extract(CAST(l.body AS TEXT), '$.subject_ref') = ? ORDER BY r.idx",
            (case_ref, subject_ref),
        ).fetchall()
        for r in rows:
            entry = dict(zip(ENTRY_COLUMNS, r[:-1], strict=True))
            out.append((entry, json.loads(bytes(r[-1])), closed_ms))
    out.sort(key=lambda item: int(item[0]["idx"]))
    return out


def purge_status(tx: Tx) -> dict[str, Any]:
    """How many purge runs the ledger records, and the last one's time and size."""
    row = tx.conn.execute(
        "SELECT COUNT(*), MAX(idx) FROM review_entries WHERE type = 'purge'"
    ).fetchone()
    runs, last = int(row[0]), row[1]
    status: dict[str, Any] = {"runs": runs, "last_ms": None, "last_entries": None}
    if last is not None:
        body = entry_body(tx, int(last))
        status["last_ms"] = tx.conn.execute(
            "SELECT time_ms FROM ledger WHERE idx = ?", (last,)
        ).fetchone()[0]
        if body is not None and isinstance(body.get("indexes"), list):
            status["last_entries"] = len(body["indexes"])
    return status


def relied_on(
    tx: Tx, orgs: list[str], case_ref: str | None, at_ms: int
) -> dict[str, list[dict[str, Any]]]:
    """The accessions and declarations of `orgs` that were in force at `at_ms`."""
    if not orgs:
        return {"accessions": [], "declarations": []}
    marks = ",".join("?" * len(orgs))
    acc = tx.conn.execute(
        "SELECT a.org, a.protocol_id, p.version, a.signed_at_ms, a.received_ms, a.revoked_ms"
        f" FROM accessions a JOIN protocols p ON p.protocol_id = a.protocol_id"
        f" WHERE a.org IN ({marks}) AND a.received_ms <= ?"
        " AND (a.revoked_ms IS NULL OR a.revoked_ms > ?) AND p.valid_from_ms <= ?"
        " AND (p.valid_until_ms IS NULL OR p.valid_until_ms > ?) ORDER BY a.org",
        (*orgs, at_ms, at_ms, at_ms, at_ms),
    ).fetchall()
    acc_keys = ("org", "protocol_id", "version", "signed_at_ms", "received_ms", "revoked_ms")
    decl: list[Any] = []
    if case_ref is not None:
        decl = tx.conn.execute(
            "SELECT declaration_id, org, case_ref, signer_role, valid_from_ms, valid_until_ms"
            f" FROM declarations WHERE org IN ({marks}) AND case_ref = ? AND received_ms <= ?"
            " AND valid_from_ms <= ? AND valid_until_ms > ?"
            " AND (revoked_ms IS NULL OR revoked_ms > ?) ORDER BY org, declaration_id",
            (*orgs, case_ref, at_ms, at_ms, at_ms, at_ms),
        ).fetchall()
    decl_keys = (
        "declaration_id",
        "org",
        "case_ref",
        "signer_role",
        "valid_from_ms",
        "valid_until_ms",
    )
    return {
        "accessions": [dict(zip(acc_keys, r, strict=True)) for r in acc],
        "declarations": [dict(zip(decl_keys, r, strict=True)) for r in decl],
    }
