"""SQL of case messages, referrals, attachment blobs and notifications (issue #8).

Small functions over a `Tx`, composed by services/messages.py and services/blobs.py
inside one storage job, so that a message's ledger entry, its idempotency record,
the blobs' recipients and the inbox rows commit together. Blob *files* are
blob_files.py's; this module only keeps their rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.storage.database import Tx


@dataclass(frozen=True, slots=True)
class MessageRecord:
    exchange_id: str
    kind: str
    case_ref: str
    sender: str
    body_sha256: bytes
    response: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class ExpiringDeclaration:
    declaration_id: int
    org: str
    case_ref: str
    valid_until_ms: int


def _marks(n: int) -> str:
    return ",".join("?" * n)


# -- blobs -------------------------------------------------------------------------


def insert_blob(tx: Tx, *, blob_id: str, uploader: str, size: int, now_ms: int) -> None:
    """Record an upload (the same bytes uploaded again by the same org: one row)."""
    tx.conn.execute(
        "INSERT OR IGNORE INTO blobs (blob_id, uploader, size, created_ms) VALUES (?, ?, ?, ?)",
        (blob_id, uploader, size, now_ms),
    )


def owned_blobs(tx: Tx, uploader: str, blob_ids: Sequence[str]) -> set[str]:
    rows = tx.conn.execute(
        f"SELECT blob_id FROM blobs WHERE uploader = ? AND blob_id IN ({_marks(len(blob_ids))})",
        (uploader, *blob_ids),
    ).fetchall()
    return {str(r[0]) for r in rows}


def reference_blobs(
    tx: Tx, *, blob_ids: Sequence[str], exchange_id: str, orgs: Iterable[str]
) -> None:
    """The recipients of one message or referral may now fetch its blobs."""
    recipients = sorted(set(orgs))
    tx.conn.executemany(
        "UPDATE blobs SET referenced = 1 WHERE blob_id = ?", [(b,) for b in blob_ids]
    )
    tx.conn.executemany(
        "INSERT OR IGNORE INTO blob_recipients (blob_id, exchange_id, org) VALUES (?, ?, ?)",
        [(b, exchange_id, org) for b in blob_ids for org in recipients],
    )


def blob_size_for(tx: Tx, blob_id: str, org: str) -> int | None:
    """The blob's size if `org` is a recipient of something that names it, else None."""
    row = tx.conn.execute(
        "SELECT b.size FROM blobs b WHERE b.blob_id = ? AND EXISTS (SELECT 1 FROM"
        " blob_recipients r WHERE r.blob_id = b.blob_id AND r.org = ?) LIMIT 1",
        (blob_id, org),
    ).fetchone()
    return None if row is None else int(row[0])


def mark_fetched(tx: Tx, blob_id: str, org: str, now_ms: int) -> None:
    tx.conn.execute(
        "UPDATE blob_recipients SET fetched_ms = ? WHERE blob_id = ? AND org = ?"
        " AND fetched_ms IS NULL",
        (now_ms, blob_id, org),
    )


def mark_acked(tx: Tx, org: str, message_ids: Sequence[int], now_ms: int) -> list[str]:
    """The blobs of the acknowledged inbox messages; returns the blob ids touched."""
    if not message_ids:
        return []
    rows = tx.conn.execute(
        "SELECT DISTINCT r.blob_id FROM blob_recipients r JOIN inbox i"
        " ON i.exchange_id = r.exchange_id AND i.org = r.org"
        f" WHERE r.org = ? AND i.message_id IN ({_marks(len(message_ids))})",
        (org, *message_ids),
    ).fetchall()
    tx.conn.execute(
        "UPDATE blob_recipients SET acked_ms = ? WHERE org = ? AND acked_ms IS NULL"
        " AND exchange_id IN (SELECT exchange_id FROM inbox WHERE org = ?"
        f" AND message_id IN ({_marks(len(message_ids))}))",
        (now_ms, org, org, *message_ids),
    )
    return [str(r[0]) for r in rows]


def delete_blob_rows(tx: Tx, blob_ids: Sequence[str]) -> None:
    tx.conn.executemany("DELETE FROM blob_recipients WHERE blob_id = ?", [(b,) for b in blob_ids])
    tx.conn.executemany("DELETE FROM blobs WHERE blob_id = ?", [(b,) for b in blob_ids])


def completed_blobs(tx: Tx, blob_ids: Sequence[str]) -> list[str]:
    """Of `blob_ids`, those every recipient has fetched to the end and acknowledged."""
    done: list[str] = []
    for blob_id in sorted(set(blob_ids)):
        row = tx.conn.execute(
            "SELECT COUNT(*), SUM(fetched_ms IS NOT NULL AND acked_ms IS NOT NULL)"
            " FROM blob_recipients WHERE blob_id = ?",
            (blob_id,),
        ).fetchone()
        if row is not None and int(row[0]) > 0 and int(row[0]) == int(row[1] or 0):
            done.append(blob_id)
    return done


def expired_blobs(tx: Tx, *, unreferenced_before_ms: int, created_before_ms: int) -> list[str]:
    """Blobs nothing referenced within their grace period, and blobs past retention."""
    rows = tx.conn.execute(
        "SELECT blob_id FROM blobs GROUP BY blob_id HAVING"
        " (MAX(referenced) = 0 AND MAX(created_ms) < ?) OR MAX(created_ms) < ?",
        (unreferenced_before_ms, created_before_ms),
    ).fetchall()
    return [str(r[0]) for r in rows]


def known_blob_ids(tx: Tx) -> set[str]:
    return {str(r[0]) for r in tx.conn.execute("SELECT DISTINCT blob_id FROM blobs").fetchall()}


def blob_totals(tx: Tx) -> tuple[int, int, int | None]:
    """(blobs, bytes) stored, each blob counted once, and the upload time of the oldest
    blob a recipient has not fetched yet (None: every named blob was fetched)."""
    row = tx.conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM"
        " (SELECT blob_id, MAX(size) AS size FROM blobs GROUP BY blob_id)"
    ).fetchone()
    oldest = tx.conn.execute(
        "SELECT MIN(b.created_ms) FROM blobs b WHERE EXISTS (SELECT 1 FROM blob_recipients r"
        " WHERE r.blob_id = b.blob_id AND r.fetched_ms IS NULL)"
    ).fetchone()
    count, size = (int(row[0]), int(row[1])) if row else (0, 0)
    return count, size, None if oldest is None or oldest[0] is None else int(oldest[0])


def purge_case_messages(tx: Tx, case_refs: Sequence[str]) -> list[str]:
    """Forget the messages of cases whose retention ran out; returns the blobs that
    only they referenced (to delete with their files)."""
    gone: set[str] = set()
    for ref in case_refs:
        rows = tx.conn.execute(
            "SELECT DISTINCT r.blob_id FROM blob_recipients r JOIN messages m"
            " ON m.exchange_id = r.exchange_id WHERE m.case_ref = ?",
            (ref,),
        ).fetchall()
        gone.update(str(r[0]) for r in rows)
        tx.conn.execute(
            "DELETE FROM blob_recipients WHERE exchange_id IN"
            " (SELECT exchange_id FROM messages WHERE case_ref = ?)",
            (ref,),
        )
        tx.conn.execute("DELETE FROM messages WHERE case_ref = ?", (ref,))
    orphans = [
        b
        for b in sorted(gone)
        if tx.conn.execute("SELECT 1 FROM blob_recipients WHERE blob_id = ?", (b,)).fetchone()
        is None
    ]
    delete_blob_rows(tx, orphans)
    return orphans


# -- messages and referrals -------------------------------------------------------------


def get_message(tx: Tx, exchange_id: str) -> MessageRecord | None:
    row = tx.conn.execute(
        "SELECT exchange_id, kind, case_ref, sender, body_sha256, response, created_ms"
        " FROM messages WHERE exchange_id = ?",
        (exchange_id,),
    ).fetchone()
    if row is None:
        return None
    return MessageRecord(
        str(row[0]), str(row[1]), str(row[2]), str(row[3]), bytes(row[4]), str(row[5]), int(row[6])
    )


def exchange_id_taken(tx: Tx, exchange_id: str) -> bool:
    """Exchange ids are unique per hub, across dat/wat exchanges and messages."""
    row = tx.conn.execute(
        "SELECT 1 FROM exchanges WHERE exchange_id = ? UNION ALL"
        " SELECT 1 FROM messages WHERE exchange_id = ? LIMIT 1",
        (exchange_id, exchange_id),
    ).fetchone()
    return row is not None


def insert_message(tx: Tx, rec: MessageRecord) -> None:
    tx.conn.execute(
        "INSERT INTO messages (exchange_id, kind, case_ref, sender, body_sha256, response,"
        " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            rec.exchange_id,
            rec.kind,
            rec.case_ref,
            rec.sender,
            rec.body_sha256,
            rec.response,
            rec.created_ms,
        ),
    )


# -- notifications ------------------------------------------------------------------


def expiring_declarations(tx: Tx, *, now_ms: int, until_ms: int) -> list[ExpiringDeclaration]:
    """Valid, unrevoked declarations that end before `until_ms` and whose organisation
    was not told yet, of cases still open."""
    rows = tx.conn.execute(
        "SELECT d.declaration_id, d.org, d.case_ref, d.valid_until_ms FROM declarations d"
        " JOIN cases c ON c.case_ref = d.case_ref"
        " WHERE d.revoked_ms IS NULL AND d.expiry_notified_ms IS NULL AND c.status = 'open'"
        " AND d.valid_until_ms > ? AND d.valid_until_ms <= ?"
        # A newer declaration that runs longer makes the warning moot.
        " AND NOT EXISTS (SELECT 1 FROM declarations n WHERE n.org = d.org"
        " AND n.case_ref = d.case_ref AND n.revoked_ms IS NULL AND n.valid_until_ms > ?)"
        " ORDER BY d.declaration_id",
        (now_ms, until_ms, until_ms),
    ).fetchall()
    return [ExpiringDeclaration(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


def mark_declaration_notified(tx: Tx, declaration_id: int, now_ms: int) -> None:
    tx.conn.execute(
        "UPDATE declarations SET expiry_notified_ms = ? WHERE declaration_id = ?",
        (now_ms, declaration_id),
    )
