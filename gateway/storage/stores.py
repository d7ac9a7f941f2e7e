"""Every SQL statement of the hub's domain tables, as small functions over a `Tx`.

Services compose these inside one job (`Database.write`) so that a request's state
change, its ledger entries, its idempotency record and its nonce commit together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.storage.database import Tx
from gateway.storage.records import (
    CaseRecord,
    ExchangeRecord,
    InboxMessage,
    OrgRecord,
    RecipientRecord,
)
from gateway.storage.rows import insert_rows

# -- directory ---------------------------------------------------------------

_ORG_COLUMNS = (
    "org, role, domain, name, signing_key, signing_kid, encryption_key, encryption_kid,"
    " status, valid_until_ms, created_ms, revoked_ms"
)


def _org(r: tuple[Any, ...]) -> OrgRecord:
    return OrgRecord(
        org=str(r[0]),
        role=str(r[1]),
        domain=None if r[2] is None else str(r[2]),
        name=str(r[3]),
        signing_key=bytes(r[4]),
        signing_kid=str(r[5]),
        encryption_key=bytes(r[6]),
        encryption_kid=str(r[7]),
        status=str(r[8]),
        valid_until_ms=None if r[9] is None else int(r[9]),
        created_ms=int(r[10]),
        revoked_ms=None if r[11] is None else int(r[11]),
    )


def list_orgs(tx: Tx) -> list[OrgRecord]:
    rows = tx.conn.execute(f"SELECT {_ORG_COLUMNS} FROM organisations ORDER BY org").fetchall()
    return [_org(r) for r in rows]


def directory_version(tx: Tx) -> int:
    row = tx.conn.execute("SELECT value FROM meta WHERE key = 'directory_version'").fetchone()
    return int(row[0]) if row else 0


def upsert_org(tx: Tx, rec: OrgRecord) -> None:
    """Add an organisation or replace its keys (rotation); bumps the directory version."""
    tx.conn.execute(
        f"INSERT INTO organisations ({_ORG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (org) DO UPDATE SET role = excluded.role, domain = excluded.domain,"
        " name = excluded.name, signing_key = excluded.signing_key,"
        " signing_kid = excluded.signing_kid, encryption_key = excluded.encryption_key,"
        " encryption_kid = excluded.encryption_kid, status = excluded.status,"
        " valid_until_ms = excluded.valid_until_ms, revoked_ms = excluded.revoked_ms",
        (
            rec.org,
            rec.role,
            rec.domain,
            rec.name,
            rec.signing_key,
            rec.signing_kid,
            rec.encryption_key,
            rec.encryption_kid,
            rec.status,
            rec.valid_until_ms,
            rec.created_ms,
            rec.revoked_ms,
        ),
    )
    _bump_directory(tx)


def revoke_org(tx: Tx, org: str, now_ms: int) -> bool:
    cur = tx.conn.execute(
        "UPDATE organisations SET status = 'revoked', revoked_ms = ?"
        " WHERE org = ? AND status = 'active'",
        (now_ms, org),
    )
    _bump_directory(tx)
    return cur.rowcount > 0


def _bump_directory(tx: Tx) -> None:
    tx.conn.execute(
        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'directory_version'"
    )


# -- cases -------------------------------------------------------------------


def get_case(tx: Tx, case_ref: str) -> CaseRecord | None:
    return tx.cached(("case", case_ref), lambda: _read_case(tx, case_ref))


def _read_case(tx: Tx, case_ref: str) -> CaseRecord | None:
    # One statement (not three): this runs inside every exchange step's job.
    row = tx.conn.execute(
        "SELECT case_ref, theme, status, registered_by, created_ms, closed_ms, close_ledger,"
        " (SELECT json_group_array(org) FROM case_participants p WHERE p.case_ref = c.case_ref),"
        " (SELECT json_group_object(subject_ref, pid) FROM case_subjects s"
        "  WHERE s.case_ref = c.case_ref)"
        " FROM cases c WHERE case_ref = ?",
        (case_ref,),
    ).fetchone()
    if row is None:
        return None
    return CaseRecord(
        case_ref=row[0],
        theme=row[1],
        status=row[2],
        registered_by=row[3],
        created_ms=row[4],
        closed_ms=row[5],
        close_ledger=row[6],
        participants=frozenset(json.loads(row[7])),
        subjects=dict(json.loads(row[8])),
    )


def insert_case(
    tx: Tx,
    *,
    case_ref: str,
    theme: str,
    registered_by: str,
    now_ms: int,
    subjects: Sequence[tuple[str, str]],
    participants: Iterable[str],
) -> None:
    tx.forget()
    tx.conn.execute(
        "INSERT INTO cases (case_ref, theme, status, registered_by, created_ms)"
        " VALUES (?, ?, 'open', ?, ?)",
        (case_ref, theme, registered_by, now_ms),
    )
    tx.conn.executemany(
        "INSERT INTO case_subjects (case_ref, subject_ref, pid) VALUES (?, ?, ?)",
        [(case_ref, ref, pid) for ref, pid in subjects],
    )
    add_participants(tx, case_ref, participants, now_ms)


def add_participants(tx: Tx, case_ref: str, orgs: Iterable[str], now_ms: int) -> None:
    tx.forget()
    tx.conn.executemany(
        "INSERT OR IGNORE INTO case_participants (case_ref, org, added_ms) VALUES (?, ?, ?)",
        [(case_ref, org, now_ms) for org in orgs],
    )


def close_case(tx: Tx, case_ref: str, now_ms: int, ledger_index: int) -> None:
    tx.forget()
    tx.conn.execute(
        "UPDATE cases SET status = 'closed', closed_ms = ?, close_ledger = ? WHERE case_ref = ?",
        (now_ms, ledger_index, case_ref),
    )


# -- exchanges ---------------------------------------------------------------


def get_exchange(tx: Tx, exchange_id: str) -> ExchangeRecord | None:
    row = tx.conn.execute(
        "SELECT exchange_id, kind, case_ref, subject_ref, requester, body_sha256, response,"
        " created_ms FROM exchanges WHERE exchange_id = ?",
        (exchange_id,),
    ).fetchone()
    if row is None:
        return None
    return ExchangeRecord(
        exchange_id=row[0],
        kind=row[1],
        case_ref=row[2],
        subject_ref=row[3],
        requester=row[4],
        body_sha256=bytes(row[5]),
        response=row[6],
        created_ms=row[7],
    )


def insert_exchange(tx: Tx, rec: ExchangeRecord) -> None:
    tx.conn.execute(
        "INSERT INTO exchanges (exchange_id, kind, case_ref, subject_ref, requester,"
        " body_sha256, response, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            rec.exchange_id,
            rec.kind,
            rec.case_ref,
            rec.subject_ref,
            rec.requester,
            rec.body_sha256,
            rec.response,
            rec.created_ms,
        ),
    )


def insert_recipients(tx: Tx, recs: Sequence[RecipientRecord]) -> None:
    insert_rows(
        tx.conn,
        "INSERT INTO exchange_recipients (exchange_id, org, outcome, payload_sha256)",
        [(r.exchange_id, r.org, r.outcome, r.payload_sha256) for r in recs],
    )


def get_recipient(tx: Tx, exchange_id: str, org: str) -> RecipientRecord | None:
    row = tx.conn.execute(
        "SELECT exchange_id, org, outcome, payload_sha256, decision, answer_sha256,"
        " answer_response, answered_ms FROM exchange_recipients"
        " WHERE exchange_id = ? AND org = ?",
        (exchange_id, org),
    ).fetchone()
    if row is None:
        return None
    return RecipientRecord(
        exchange_id=row[0],
        org=row[1],
        outcome=row[2],
        payload_sha256=None if row[3] is None else bytes(row[3]),
        decision=row[4],
        answer_sha256=None if row[5] is None else bytes(row[5]),
        answer_response=row[6],
        answered_ms=row[7],
    )


def record_answer(
    tx: Tx,
    *,
    exchange_id: str,
    org: str,
    decision: str,
    answer_sha256: bytes,
    response: str,
    now_ms: int,
) -> None:
    tx.conn.execute(
        "UPDATE exchange_recipients SET decision = ?, answer_sha256 = ?, answer_response = ?,"
        " answered_ms = ? WHERE exchange_id = ? AND org = ? AND answer_sha256 IS NULL",
        (decision, answer_sha256, response, now_ms, exchange_id, org),
    )


def known_answers(tx: Tx, exchange_id: str) -> int:
    row = tx.conn.execute(
        "SELECT COUNT(*) FROM exchange_recipients WHERE exchange_id = ? AND decision = 'known'",
        (exchange_id,),
    ).fetchone()
    return int(row[0])


# -- inbox -------------------------------------------------------------------

_INBOX_COLUMNS = (
    "message_id, org, kind, exchange_id, sender, case_ref, subject_ref, decision,"
    " reason_code, envelope, created_ms"
)


def enqueue(
    tx: Tx,
    *,
    org: str,
    kind: str,
    exchange_id: str | None,
    sender: str,
    case_ref: str,
    subject_ref: str,
    decision: str | None,
    reason_code: str | None,
    envelope: str | None,
    now_ms: int,
) -> int:
    cur = tx.conn.execute(
        "INSERT INTO inbox (org, kind, exchange_id, sender, case_ref, subject_ref, decision,"
        " reason_code, envelope, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            org,
            kind,
            exchange_id,
            sender,
            case_ref,
            subject_ref,
            decision,
            reason_code,
            envelope,
            now_ms,
        ),
    )
    return int(cur.lastrowid or 0)


def pending_messages(tx: Tx, org: str, limit: int, exclude: Sequence[int]) -> list[InboxMessage]:
    """The oldest unacknowledged messages of `org`, skipping those currently leased."""
    skip = set(exclude)
    rows = tx.conn.execute(
        f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE org = ? AND acked_ms IS NULL"
        " ORDER BY message_id LIMIT ?",
        (org, limit + len(skip)),
    ).fetchall()
    out = [InboxMessage(*r) for r in rows if r[0] not in skip]
    return out[:limit]


def ack_messages(tx: Tx, org: str, message_ids: Sequence[int], now_ms: int) -> list[int]:
    """Mark messages acknowledged (dropping their ciphertext); returns the ids that exist."""
    # Two statements for the whole batch, not two per message (the writer's thread
    # pays for every step). SQLite allows 32766 parameters; a batch has at most 1000.
    ids = list(dict.fromkeys(message_ids))
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    rows = tx.conn.execute(
        f"SELECT message_id FROM inbox WHERE org = ? AND message_id IN ({marks})",
        (org, *ids),
    ).fetchall()
    tx.conn.execute(
        "UPDATE inbox SET acked_ms = ?, envelope = NULL"
        f" WHERE org = ? AND acked_ms IS NULL AND message_id IN ({marks})",
        (now_ms, org, *ids),
    )
    exist = {int(r[0]) for r in rows}
    return [mid for mid in message_ids if mid in exist]


def inbox_backlog(tx: Tx) -> dict[str, tuple[int, int]]:
    """org -> (pending count, oldest created_ms)."""
    rows = tx.conn.execute(
        "SELECT org, COUNT(*), MIN(created_ms) FROM inbox WHERE acked_ms IS NULL GROUP BY org"
    ).fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


# -- replay cache --------------------------------------------------------------


def insert_nonce(tx: Tx, keyid: str, nonce: str, expires_ms: int) -> None:
    tx.conn.execute(
        "INSERT OR IGNORE INTO nonces (keyid, nonce, expires_ms) VALUES (?, ?, ?)",
        (keyid, nonce, expires_ms),
    )


def active_nonces(tx: Tx, now_ms: int) -> list[tuple[str, str, int]]:
    rows = tx.conn.execute(
        "SELECT keyid, nonce, expires_ms FROM nonces WHERE expires_ms > ?", (now_ms,)
    ).fetchall()
    return [(r[0], r[1], int(r[2])) for r in rows]


PRUNE_CHUNK = 2000


def prune(tx: Tx, now_ms: int, acked_before_ms: int) -> int:
    """Delete up to PRUNE_CHUNK expired nonces and as many old acknowledged messages;
    returns the larger count, so that the caller repeats (each chunk a short job of
    its own) until it is below PRUNE_CHUNK."""
    nonces = tx.conn.execute(
        "DELETE FROM nonces WHERE (keyid, nonce) IN"
        " (SELECT keyid, nonce FROM nonces WHERE expires_ms <= ? LIMIT ?)",
        (now_ms, PRUNE_CHUNK),
    ).rowcount
    acked = tx.conn.execute(
        "DELETE FROM inbox WHERE message_id IN (SELECT message_id FROM inbox"
        " WHERE acked_ms IS NOT NULL AND acked_ms < ? LIMIT ?)",
        (acked_before_ms, PRUNE_CHUNK),
    ).rowcount
    return max(nonces, acked)
