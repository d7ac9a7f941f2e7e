"""Inbox notifications: events a partner must know about, as metadata only.

A notification is an inbox message of kind `notification` from the hub itself,
without an envelope: `{"event": ..., "case_ref": ..., ...}` with case and exchange
references and organisation ids, never a name, pid, BSN or any content. It is
queued inside the storage job of the step that caused it (so it exists exactly when
that step is durable) and wakes the organisation's long-poll after commit.

Events:
- `case-closed`: a case the organisation takes part in was closed (afgeschaald).
- `participant-added`: an organisation was added to a case it takes part in (the
  new participant is told too).
- `dat-match`: the first holder answered `known` to the organisation's dat-request
  (once per dat-request; the answers themselves follow in the inbox).
- `declaration-expiring`: the organisation's geheimhoudingsverklaring for a case
  ends within the configured window (once per declaration; the periodic sweep).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from gateway.storage import message_store, stores
from gateway.storage.database import Database, Tx

DAY_MS = 86_400_000


class Notifier:
    def __init__(
        self,
        hub_org: str,
        wake: Callable[[str], None],
        *,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self._hub_org = hub_org
        self._wake = wake
        self._count = count

    def send(
        self,
        tx: Tx,
        orgs: Iterable[str],
        *,
        event: str,
        case_ref: str,
        now_ms: int,
        subject_ref: str = "",
        exchange_id: str | None = None,
        **details: Any,
    ) -> None:
        """Queue one notification per organisation in the caller's job."""
        payload = json.dumps(
            {"envelope": None, "notification": {"event": event, "case_ref": case_ref, **details}},
            separators=(",", ":"),
        )
        for org in sorted(set(orgs) - {self._hub_org}):
            stores.enqueue(
                tx,
                org=org,
                kind="notification",
                exchange_id=exchange_id,
                sender=self._hub_org,
                case_ref=case_ref,
                subject_ref=subject_ref,
                decision=None,
                reason_code=None,
                envelope=payload,
                now_ms=now_ms,
            )
            tx.on_commit(functools.partial(self._wake, org))
            if self._count is not None:
                tx.on_commit(functools.partial(self._count, event))

    async def declarations_expiring(self, db: Database, *, now_ms: int, window_days: float) -> int:
        """Tell each incidental partner once that its declaration for a case runs out
        within the window; returns how many were told."""
        until = now_ms + int(window_days * DAY_MS)

        def job(tx: Tx) -> int:
            found = message_store.expiring_declarations(tx, now_ms=now_ms, until_ms=until)
            for d in found:
                self.send(
                    tx,
                    [d.org],
                    event="declaration-expiring",
                    case_ref=d.case_ref,
                    now_ms=now_ms,
                    valid_until_ms=d.valid_until_ms,
                )
                message_store.mark_declaration_notified(tx, d.declaration_id, now_ms)
            return len(found)

        return await db.write("declaration_notices", job)
