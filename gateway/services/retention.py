"""Retention: purge what a closed case no longer needs, keep the proofs.

Purging a ledger entry clears its body and salt and the link to its case; its leaf
data stays, so every inclusion proof and checkpoint stays valid, and a `purge`
entry names what was purged and why. The case's operational data at the hub (pids,
exchange records, inbox leftovers) goes after `case_data_days`. SQLite runs with
secure_delete and the WAL is truncated afterwards, so the purged bytes are gone
from the files, not just unlinked.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import RetentionSettings
from gateway.storage import ledger_store, message_store
from gateway.storage.database import Tx


@dataclass(frozen=True, slots=True)
class PurgePlan:
    entries: tuple[int, ...]
    cases: tuple[str, ...]
    # Attachment blobs only the purged cases' messages referenced: the caller deletes
    # their files once this transaction has committed.
    blobs: tuple[str, ...] = ()


def plan(tx: Tx, settings: RetentionSettings, now_ms: int) -> PurgePlan:
    entries = ledger_store.purge_candidates(
        tx.conn, now_ms, dict(settings.entry_days_by_type), settings.entry_days
    )
    cases = ledger_store.closed_cases_before(tx.conn, now_ms - settings.case_data_days * 86_400_000)
    return PurgePlan(tuple(entries), tuple(cases))


def execute(tx: Tx, settings: RetentionSettings, now_ms: int, *, actor: str) -> PurgePlan:
    """Purge in the caller's transaction; returns what was purged."""
    todo = plan(tx, settings, now_ms)
    if todo.entries:
        tx.forget()
        ledger_store.purge_entries(tx.conn, todo.entries)
    blobs: tuple[str, ...] = ()
    if todo.cases:
        ledger_store.purge_case_data(tx.conn, todo.cases)
        blobs = tuple(message_store.purge_case_messages(tx, todo.cases))
    if todo.entries or todo.cases:
        tx.append_ledger(
            "purge",
            now_ms,
            {
                "indexes": list(todo.entries),
                "cases_purged": len(todo.cases),
                "reason": "retention",
                "by": actor,
            },
            (actor,),
        )
    return PurgePlan(todo.entries, todo.cases, blobs)
