"""What a privacy officer may ask of the hub: exchanges, one exchange with its proofs,
members and declarations, refusals. Every answer is a report, and every report is a
ledger entry naming the officer (evidence of who looked at what).

Filters are parsed here from plain strings (the web layer passes query values
through), so the pages and the JSON API share one set of rules. Must not: know HTTP,
or read the clock itself.
"""

from __future__ import annotations

import asyncio
import calendar
import csv
import datetime
import functools
import io
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from gateway.clock import Clock
from gateway.config import RetentionSettings
from gateway.crypto.canonical import canonical_json
from gateway.errors import InvalidRequest, NotFound
from gateway.ledger.checkpoint import verify_checkpoint
from gateway.ledger.leaf import commitment_of, leaf_hash, parse_leaf_data
from gateway.ledger.merkle import verify_inclusion
from gateway.policy.decide import legal_basis_gaps
from gateway.services.ledger import LedgerService
from gateway.services.national import pid_sha256
from gateway.storage import ledger_store, review_store
from gateway.storage.database import Database, Tx
from gateway.storage.review_store import EntryFilter

PAGE_MAX = 200
PAGE_DEFAULT = 50
DAY_MS = 86_400_000
# The exchange steps a review lists by default (administration entries are not).
STEP_TYPES = (
    "dat-request",
    "dat-answer",
    "wat-request",
    "wat-answer",
    "denied",
    "known-check",
    "declaration",
    "accession",
    "message",
    "referral",
)
TYPE_ALIASES: Mapping[str, tuple[str, ...]] = {
    "dat": ("dat-request", "dat-answer"),
    "wat": ("wat-request", "wat-answer"),
    **{t: (t,) for t in STEP_TYPES},
}
FILTER_KEYS = ("from", "until", "org", "case", "theme", "type", "decision", "code")
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _bad(name: str, msg: str) -> InvalidRequest:
    return InvalidRequest("Invalid query.", errors=[{"loc": ["query", name], "msg": msg}])


def _date_ms(name: str, value: str) -> int:
    if not _DATE.match(value):
        raise _bad(name, "not a date (YYYY-MM-DD)")
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError as exc:
        raise _bad(name, "not a date (YYYY-MM-DD)") from exc
    return calendar.timegm(day.timetuple()) * 1000


def parse_filter(query: Mapping[str, str]) -> EntryFilter:
    """Query values to an `EntryFilter`; an empty value means "any"."""
    values = {k: query.get(k, "").strip() for k in FILTER_KEYS}
    for key in ("org", "case", "theme", "decision", "code"):
        if values[key] and not _TOKEN.match(values[key]):
            raise _bad(key, "not a valid value")
    kind = values["type"]
    if kind and kind not in TYPE_ALIASES:
        raise _bad("type", "unknown type")
    return EntryFilter(
        types=TYPE_ALIASES[kind] if kind else STEP_TYPES,
        from_ms=_date_ms("from", values["from"]) if values["from"] else None,
        # `until` is inclusive: the whole day.
        until_ms=_date_ms("until", values["until"]) + DAY_MS if values["until"] else None,
        org=values["org"] or None,
        case_ref=values["case"] or None,
        theme=values["theme"] or None,
        decision=values["decision"] or None,
        code=values["code"] or None,
    )


def parse_page(query: Mapping[str, str]) -> tuple[int | None, int]:
    before_raw, limit_raw = query.get("before", ""), query.get("limit", "")
    before = None
    if before_raw:
        if not (before_raw.isascii() and before_raw.isdigit()) or len(before_raw) > 18:
            raise _bad("before", "not a ledger index")
        before = int(before_raw)
    limit = PAGE_DEFAULT
    if limit_raw:
        if not (limit_raw.isascii() and limit_raw.isdigit()) or not 1 <= int(limit_raw) <= PAGE_MAX:
            raise _bad("limit", f"between 1 and {PAGE_MAX}")
        limit = int(limit_raw)
    return before, limit


def basis_summary(basis: object) -> dict[str, Any] | None:
    if not isinstance(basis, Mapping):
        return None
    gaps = legal_basis_gaps(basis, special=False)
    return {"legal_basis": dict(basis), "complete": not gaps, "missing": gaps}


log = logging.getLogger(__name__)
# Before a read the officer waits, so the index catches up in large steps; in the
# background it follows in small ones, each a short job between the exchange steps
# (indexing costs ~50 us an entry: 5000 at once would hold the writer for 250 ms).
_CATCH_UP_BATCH = 5000
_BACKGROUND_BATCH = 128


class ReviewService:
    def __init__(
        self,
        db: Database,
        ledger: LedgerService,
        clock: Clock,
        *,
        hub_org: str,
        signing_key: bytes,
        retention: RetentionSettings,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._clock = clock
        self._hub_org = hub_org
        self._signing_key = signing_key
        self._retention = retention

    async def catch_up(self, batch: int = _CATCH_UP_BATCH) -> None:
        """Bring the review index up to the ledger (it is built off the append path)."""

        def step(tx: Tx) -> int:
            return ledger_store.index_for_review(tx.conn, batch)

        while await self._db.write("review_index", step, bulk=True) == batch:
            pass

    async def run_indexer(self, interval_s: float = 0.25) -> None:
        """Keep the review index close behind the ledger in the background."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.catch_up(_BACKGROUND_BATCH)
            except Exception:
                log.exception("review indexing failed")

    async def record_report(self, user: str, report: str, params: Mapping[str, Any]) -> None:
        """Every report generated is a ledger entry: who asked for what."""
        now = self._clock.now_ms()
        body = {"user": user, "report": report, "params": dict(params)}
        await self._db.write(
            "review_report",
            lambda tx: tx.append_ledger("review-report", now, body, (self._hub_org,)),
        )

    async def subject_report(
        self, user: str, pid: str, fmt: str, *, by: str = "pid"
    ) -> list[dict[str, Any]]:
        """The subject-access report (inzage) by pid; it too is a ledger entry. `by`
        says how the officer named the subject ("pid", or "bsn" when the hub computed
        the pid from a BSN and birth date, which are never recorded). The entry holds
        the pid's SHA-256, not the pid."""
        await self.catch_up()
        pid = check_pid(pid)
        found = await self._db.read(
            "review_subject", lambda tx: review_store.subject_entries(tx, pid)
        )
        rows = subject_rows(found, self._retention)
        # Like a known-check, the ledger keeps a hash of the pid, never the pid: the
        # entry proves which subject was looked up to whoever holds the pid.
        params = {"pid_sha256": pid_sha256(pid), "by": by, "format": fmt, "entries": len(rows)}
        await self.record_report(user, "subject-access", params)
        return rows

    async def ledger_status(self, self_check: dict[str, Any]) -> dict[str, Any]:
        """The latest checkpoint, the result of a self-check run, and purge status."""
        await self.catch_up()
        head = self._ledger.head
        purge = await self._db.read("review_purge_status", review_store.purge_status)
        return {
            "checkpoint": None
            if head is None
            else {"size": head.size, "root": head.root.hex(), "time_ms": head.time_ms},
            "note": None if head is None else head.note,
            "self_check": self_check,
            "purge": purge,
        }

    async def exchanges(self, flt: EntryFilter, before: int | None, limit: int) -> dict[str, Any]:
        await self.catch_up()
        rows = await self._db.read(
            "review_exchanges",
            functools.partial(review_store.list_entries, flt=flt, before=before, limit=limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": rows, "next_before": rows[-1]["idx"] if more else None}

    async def exchange(self, exchange_id: str) -> dict[str, Any]:
        await self.catch_up()
        if not _TOKEN.match(exchange_id):
            raise NotFound("No such exchange.")
        steps = await self._db.read(
            "review_exchange", lambda tx: review_store.exchange_steps(tx, exchange_id)
        )
        if not steps:
            raise NotFound("No such exchange.")
        head = self._ledger.head
        checkpoint: dict[str, Any] | None = None
        size, root = 0, b""
        if head is not None:
            # Take size and root from the signed note itself, checked with our key.
            cp = verify_checkpoint(head.note, self._ledger.origin, self._signing_key)
            size, root = cp.size, cp.root
            checkpoint = {"size": cp.size, "root": cp.root.hex(), "time_ms": cp.time_ms}
        out_steps = []
        basis = None
        for entry, body in steps:
            proof = await self._prove(entry["idx"], size, root)
            if entry["type"] == "wat-request" and body is not None:
                basis = basis_summary(body.get("legal_basis"))
            out_steps.append({**entry, "body": body, "proof": proof})
        first = out_steps[0]
        orgs = sorted(
            {o for s in out_steps for o in (s["org"], s["counterpart"]) if o and ", " not in o}
            | {
                o
                for s in out_steps
                if s["body"] is not None and isinstance(s["body"].get("recipients"), list)
                for o in s["body"]["recipients"]
                if isinstance(o, str)
            }
        )
        relied = await self._db.read(
            "review_relied_on",
            lambda tx: review_store.relied_on(tx, orgs, first["case_ref"], int(first["time_ms"])),
        )
        return {
            "exchange_id": exchange_id,
            "steps": out_steps,
            "legal_basis": basis,
            "relied_on": relied,
            "checkpoint": checkpoint,
            "verified": bool(out_steps) and all(s["proof"]["verified"] for s in out_steps),
        }

    async def _prove(self, index: int, size: int, root: bytes) -> dict[str, Any]:
        def read(tx: Tx) -> ledger_store.LedgerRow | None:
            rows = ledger_store.read_entries(tx.conn, index, index + 1)
            return rows[0] if rows else None

        row = await self._db.read("review_leaf", read)
        if row is None:
            return {"verified": False, "reason": "entry missing"}
        leaf_ok = leaf_hash(row.leaf_data) == row.leaf_hash
        body_ok: bool | None = None
        if row.body is not None and row.salt is not None:
            commitment = parse_leaf_data(row.leaf_data).commitment
            body_ok = commitment_of(row.salt, canonical_json(row.body)) == commitment
        if index >= size:
            return {
                "verified": False,
                "reason": "not yet covered by a checkpoint",
                "leaf_ok": leaf_ok,
                "body_ok": body_ok,
            }
        proof = await self._ledger.inclusion(index, size)
        included = verify_inclusion(
            index,
            size,
            bytes.fromhex(proof["leaf_hash"]),
            [bytes.fromhex(p) for p in proof["path"]],
            root,
        )
        included = included and bytes.fromhex(proof["leaf_hash"]) == row.leaf_hash
        return {
            "verified": bool(leaf_ok and included and body_ok is not False),
            "leaf_ok": leaf_ok,
            "body_ok": body_ok,
            "included": included,
            "size": size,
            "path": proof["path"],
            "leaf_hash": proof["leaf_hash"],
        }

    async def members(self) -> dict[str, Any]:
        await self.catch_up()
        now = self._clock.now_ms()

        def read(tx: Tx) -> dict[str, Any]:
            return {
                "orgs": review_store.organisations(tx),
                "protocols": review_store.protocols(tx),
                "accessions": review_store.accessions(tx),
                "declarations": review_store.declarations(tx),
            }

        data = await self._db.read("review_members", read)
        current = [
            p
            for p in data["protocols"]
            if p["valid_from_ms"] <= now
            and (p["valid_until_ms"] is None or p["valid_until_ms"] > now)
        ]
        current_id = max(current, key=lambda p: p["version"])["protocol_id"] if current else None
        active = [
            a
            for a in data["accessions"]
            if a["revoked_ms"] is None
            and (a["valid_until_ms"] is None or a["valid_until_ms"] > now)
        ]
        members = {a["org"] for a in active if a["protocol_id"] == current_id}
        valid_decl = [
            d
            for d in data["declarations"]
            if d["revoked_ms"] is None and d["valid_from_ms"] <= now < d["valid_until_ms"]
        ]
        declared = {d["org"] for d in valid_decl}
        horizon = now + 30 * DAY_MS
        lacking = [
            o["org"]
            for o in data["orgs"]
            if o["status"] == "active"
            and (
                (o["role"] in ("partner", "zvh") and o["org"] not in members)
                or (o["role"] == "incidental" and o["org"] not in declared)
            )
        ]
        expiring = [d for d in valid_decl if d["valid_until_ms"] <= horizon] + [
            a for a in active if a["valid_until_ms"] is not None and a["valid_until_ms"] <= horizon
        ]
        by_version: dict[str, list[str]] = {}
        for a in active:
            by_version.setdefault(str(a["version"]), []).append(a["org"])
        return {
            "current_protocol": current_id,
            "protocols": data["protocols"],
            "accessions_by_version": by_version,
            "accessions": data["accessions"],
            "declarations": data["declarations"],
            "expiring_within_30_days": expiring,
            "lacking": lacking,
            "organisations": data["orgs"],
        }

    async def refusals(self, before: int | None, limit: int) -> dict[str, Any]:
        await self.catch_up()

        def read(tx: Tx) -> tuple[list[dict[str, Any]], list[Any]]:
            return review_store.refusal_counts(tx), review_store.refusals_with_basis(
                tx, before=before, limit=limit + 1
            )

        counts, listed = await self._db.read("review_refusals", read)
        items = []
        for entry, body in listed:
            summary = basis_summary(None if body is None else body.get("legal_basis"))
            if summary is not None and summary["complete"]:
                items.append({**entry, "legal_basis": summary["legal_basis"]})
        more = len(listed) > limit
        return {
            "counts": counts,
            "complete_basis_refusals": items[:limit],
            "next_before": listed[limit - 1][0]["idx"] if more else None,
        }


_PID = re.compile(r"^[0-9a-f]{128}$")  # as `models.Pid`: an OPRF output, hex
SUBJECT_COLUMNS = (
    "idx",
    "time_ms",
    "type",
    "case_ref",
    "theme",
    "from",
    "to",
    "categories",
    "purpose",
    "legal_basis",
    "decision",
    "code",
    "retained_until_ms",
)


def check_pid(pid: str) -> str:
    pid = pid.strip().lower()
    if not _PID.match(pid):
        raise InvalidRequest(
            "Invalid pid.", errors=[{"loc": ["body", "pid"], "msg": "not a 128-hex-digit pid"}]
        )
    return pid


def subject_rows(
    found: list[tuple[dict[str, Any], dict[str, Any], int | None]],
    retention: RetentionSettings,
) -> list[dict[str, Any]]:
    """One row per entry: who received what, why, on which basis, kept until when."""
    rows = []
    for entry, body, closed_ms in found:
        recipients = body.get("recipients") or (
            [entry["counterpart"]] if entry["counterpart"] else []
        )
        days = retention.entry_days_by_type.get(entry["type"], retention.entry_days)
        basis = body.get("legal_basis")
        rows.append(
            {
                "idx": entry["idx"],
                "time_ms": entry["time_ms"],
                "type": entry["type"],
                "case_ref": entry["case_ref"],
                "theme": entry["theme"],
                "from": entry["org"],
                "to": list(recipients),
                "categories": list(body.get("categories") or []),
                "purpose": body.get("purpose"),
                "legal_basis": basis if isinstance(basis, Mapping) else None,
                "decision": entry["decision"],
                "code": entry["code"],
                # Retention runs from the closing of the case; open: not yet known.
                "retained_until_ms": None if closed_ms is None else closed_ms + days * DAY_MS,
            }
        )
    return rows


def subject_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(SUBJECT_COLUMNS)
    for row in rows:
        cells = []
        for key in SUBJECT_COLUMNS:
            value = row[key]
            if isinstance(value, list):
                value = ";".join(str(v) for v in value)
            elif isinstance(value, Mapping):
                value = json.dumps(value, ensure_ascii=False, sort_keys=True)
            cells.append("" if value is None else str(value))
        writer.writerow(cells)
    return out.getvalue()
