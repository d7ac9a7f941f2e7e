"""SQL of the policy flows: privacy protocols, accessions, geheimhoudingsverklaringen
and wat-requests. Small functions over a `Tx`, composed by the services inside one job
(as in `stores`). Must not decide anything: the policy is in gateway/policy/.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.storage.database import Tx

# -- privacy protocols and accessions ---------------------------------------------


@dataclass(frozen=True, slots=True)
class ProtocolRecord:
    protocol_id: str
    version: int
    title: str
    text: bytes
    text_sha256: str
    themes: tuple[str, ...]
    valid_from_ms: int
    valid_until_ms: int | None
    published_ms: int

    def summary(self) -> dict[str, Any]:
        return {
            "protocol_id": self.protocol_id,
            "version": self.version,
            "title": self.title,
            "text_sha256": self.text_sha256,
            "themes": list(self.themes),
            "valid_from_ms": self.valid_from_ms,
            "valid_until_ms": self.valid_until_ms,
        }


_PROTOCOL_COLUMNS = (
    "protocol_id, version, title, text, text_sha256, themes, valid_from_ms, valid_until_ms,"
    " published_ms"
)


def _protocol(r: tuple[Any, ...]) -> ProtocolRecord:
    return ProtocolRecord(
        r[0],
        int(r[1]),
        r[2],
        bytes(r[3]),
        r[4],
        tuple(json.loads(r[5])),
        int(r[6]),
        None if r[7] is None else int(r[7]),
        int(r[8]),
    )


def insert_protocol(tx: Tx, rec: ProtocolRecord) -> None:
    tx.forget()
    tx.conn.execute(
        f"INSERT INTO protocols ({_PROTOCOL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            rec.protocol_id,
            rec.version,
            rec.title,
            rec.text,
            rec.text_sha256,
            json.dumps(list(rec.themes)),
            rec.valid_from_ms,
            rec.valid_until_ms,
            rec.published_ms,
        ),
    )


def list_protocols(tx: Tx) -> list[ProtocolRecord]:
    rows = tx.conn.execute(
        f"SELECT {_PROTOCOL_COLUMNS} FROM protocols ORDER BY version, protocol_id"
    ).fetchall()
    return [_protocol(r) for r in rows]


def get_protocol(tx: Tx, protocol_id: str) -> ProtocolRecord | None:
    row = tx.conn.execute(
        f"SELECT {_PROTOCOL_COLUMNS} FROM protocols WHERE protocol_id = ?", (protocol_id,)
    ).fetchone()
    return None if row is None else _protocol(row)


_CURRENT_PROTOCOL = (
    "SELECT protocol_id FROM protocols WHERE valid_from_ms <= :now"
    " AND (valid_until_ms IS NULL OR valid_until_ms > :now)"
    " ORDER BY version DESC, published_ms DESC LIMIT 1"
)


def current_protocol_id(tx: Tx, now_ms: int) -> str | None:
    """The region's protocol in force: the highest version valid now."""
    row = tx.conn.execute(_CURRENT_PROTOCOL, {"now": now_ms}).fetchone()
    return None if row is None else str(row[0])


def is_member(tx: Tx, org: str, now_ms: int) -> bool:
    """An unrevoked accession to the protocol in force (a new version needs a new one).

    Read once per group commit: the jobs of a batch (a few milliseconds) share the
    answer, as if they had all run at the batch's first read."""
    return tx.cached(("member", org), lambda: _read_member(tx, org, now_ms))


def _read_member(tx: Tx, org: str, now_ms: int) -> bool:
    row = tx.conn.execute(
        f"SELECT 1 FROM accessions WHERE org = :org AND revoked_ms IS NULL"
        f" AND protocol_id = ({_CURRENT_PROTOCOL})",
        {"org": org, "now": now_ms},
    ).fetchone()
    return row is not None


def upsert_accession(
    tx: Tx,
    *,
    protocol_id: str,
    org: str,
    text_sha256: str,
    signed_at_ms: int,
    record: str,
    now_ms: int,
) -> None:
    tx.forget()
    tx.conn.execute(
        "INSERT INTO accessions (protocol_id, org, text_sha256, signed_at_ms, record,"
        " received_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (protocol_id, org) DO UPDATE SET"
        " text_sha256 = excluded.text_sha256, signed_at_ms = excluded.signed_at_ms,"
        " record = excluded.record, received_ms = excluded.received_ms, revoked_ms = NULL",
        (protocol_id, org, text_sha256, signed_at_ms, record, now_ms),
    )


def get_accession_record(tx: Tx, protocol_id: str, org: str) -> tuple[str, int | None] | None:
    row = tx.conn.execute(
        "SELECT record, revoked_ms FROM accessions WHERE protocol_id = ? AND org = ?",
        (protocol_id, org),
    ).fetchone()
    return None if row is None else (str(row[0]), None if row[1] is None else int(row[1]))


def revoke_accession(tx: Tx, protocol_id: str, org: str, now_ms: int) -> bool:
    tx.forget()
    cur = tx.conn.execute(
        "UPDATE accessions SET revoked_ms = ? WHERE protocol_id = ? AND org = ?"
        " AND revoked_ms IS NULL",
        (now_ms, protocol_id, org),
    )
    return cur.rowcount > 0


def list_accessions(tx: Tx) -> list[dict[str, Any]]:
    rows = tx.conn.execute(
        "SELECT protocol_id, org, text_sha256, signed_at_ms, received_ms, revoked_ms"
        " FROM accessions ORDER BY protocol_id, org"
    ).fetchall()
    keys = ("protocol_id", "org", "text_sha256", "signed_at_ms", "received_ms", "revoked_ms")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# -- geheimhoudingsverklaringen ----------------------------------------------------


def insert_declaration(
    tx: Tx,
    *,
    org: str,
    case_ref: str,
    signer_name: str,
    signer_role: str,
    valid_from_ms: int,
    valid_until_ms: int,
    text_sha256: str,
    record: str,
    now_ms: int,
) -> int:
    cur = tx.conn.execute(
        "INSERT INTO declarations (org, case_ref, signer_name, signer_role, valid_from_ms,"
        " valid_until_ms, text_sha256, record, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            org,
            case_ref,
            signer_name,
            signer_role,
            valid_from_ms,
            valid_until_ms,
            text_sha256,
            record,
            now_ms,
        ),
    )
    return int(cur.lastrowid or 0)


def has_declaration(tx: Tx, org: str, case_ref: str, now_ms: int) -> bool:
    row = tx.conn.execute(
        "SELECT 1 FROM declarations WHERE org = ? AND case_ref = ? AND revoked_ms IS NULL"
        " AND valid_from_ms <= ? AND valid_until_ms > ? LIMIT 1",
        (org, case_ref, now_ms, now_ms),
    ).fetchone()
    return row is not None


def find_declaration(tx: Tx, org: str, case_ref: str, record: str) -> int | None:
    row = tx.conn.execute(
        "SELECT declaration_id FROM declarations WHERE org = ? AND case_ref = ? AND record = ?",
        (org, case_ref, record),
    ).fetchone()
    return None if row is None else int(row[0])


# -- wat-requests ------------------------------------------------------------------


def dat_known(tx: Tx, case_ref: str, subject_ref: str, holder: str) -> bool:
    """Did `holder` answer `known` to a dat-request about this subject in this case?"""
    row = tx.conn.execute(
        "SELECT 1 FROM exchange_recipients r JOIN exchanges e ON e.exchange_id = r.exchange_id"
        " WHERE e.kind = 'dat' AND e.case_ref = ? AND e.subject_ref = ? AND r.org = ?"
        " AND r.decision = 'known' LIMIT 1",
        (case_ref, subject_ref, holder),
    ).fetchone()
    return row is not None


def insert_wat(
    tx: Tx,
    *,
    exchange_id: str,
    holder: str,
    categories: Sequence[str],
    purpose: str,
    processing_activity: str,
    legal_basis: dict[str, Any],
    rule: str,
    manual_release: bool,
    deadline_ms: int,
) -> None:
    tx.conn.execute(
        "INSERT INTO wat_requests (exchange_id, holder, categories, purpose,"
        " processing_activity, legal_basis, rule, manual_release, deadline_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            exchange_id,
            holder,
            json.dumps(list(categories)),
            purpose,
            processing_activity,
            json.dumps(legal_basis, sort_keys=True),
            rule,
            int(manual_release),
            deadline_ms,
        ),
    )


def wat_decided(tx: Tx, exchange_id: str, now_ms: int) -> None:
    tx.conn.execute(
        "UPDATE wat_requests SET decided_ms = ? WHERE exchange_id = ? AND decided_ms IS NULL",
        (now_ms, exchange_id),
    )


def overdue_wat(tx: Tx, org: str, now_ms: int) -> list[dict[str, Any]]:
    """Undecided wat-requests past their deadline where `org` is requester or holder."""
    rows = tx.conn.execute(
        "SELECT w.exchange_id, e.case_ref, e.subject_ref, e.requester, w.holder,"
        " w.deadline_ms, e.created_ms FROM wat_requests w"
        " JOIN exchanges e ON e.exchange_id = w.exchange_id"
        " JOIN cases c ON c.case_ref = e.case_ref AND c.status = 'open'"
        " WHERE w.decided_ms IS NULL AND w.deadline_ms < ? AND (e.requester = ? OR w.holder = ?)"
        " ORDER BY w.deadline_ms",
        (now_ms, org, org),
    ).fetchall()
    keys = (
        "exchange_id",
        "case_ref",
        "subject_ref",
        "requester",
        "holder",
        "deadline_ms",
        "created_ms",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def wat_backlog(tx: Tx, now_ms: int) -> tuple[int, int]:
    """(pending, overdue) wat-requests, for the metrics."""
    row = tx.conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(deadline_ms < ?), 0) FROM wat_requests"
        " WHERE decided_ms IS NULL",
        (now_ms,),
    ).fetchone()
    return int(row[0]), int(row[1])
