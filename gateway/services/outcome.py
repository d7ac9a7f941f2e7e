"""How a storage job reports back: a result to send, or a recorded denial.

A 403 must be in the ledger before the caller hears of it, so a job never raises
for a denial (that would roll its ledger entry back): it appends the entry and
returns `Denied`; `settle` turns that into the `Forbidden` error after commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import DenyCode, Forbidden
from gateway.storage.database import Tx
from gateway.storage.ledger_store import LedgerRef


@dataclass(frozen=True, slots=True)
class Done:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Denied:
    code: DenyCode
    detail: str
    refs: tuple[LedgerRef, ...]


Outcome = Done | Denied

DETAILS = {
    DenyCode.FORBIDDEN_ROLE: "Your organisation's role may not do this.",
    DenyCode.NOT_A_MEMBER: (
        "The organisation has no active membership of this region's privacy protocol."
    ),
    DenyCode.DECLARATION_REQUIRED: (
        "The incidental partner has no valid geheimhoudingsverklaring for this case."
    ),
    DenyCode.NOT_A_PARTICIPANT: "The organisation is not a participant of this case.",
    DenyCode.DAT_REQUIRED: (
        "The holder has not answered 'known' to a dat-request about this subject in this case."
    ),
    DenyCode.LEGAL_BASIS_MISSING: "The legal basis is incomplete.",
    DenyCode.CATEGORY_NOT_ALLOWED: "The policy does not allow this information category here.",
}


def record_denial(
    tx: Tx,
    *,
    code: DenyCode,
    action: str,
    org: str,
    now_ms: int,
    subject_org: str | None = None,
    case_ref: str | None = None,
    exchange_id: str | None = None,
) -> LedgerRef:
    """A denied attempt is evidence too (PROTOCOL §3): one ledger entry per denial."""
    body: dict[str, Any] = {"action": action, "code": code.value, "org": org}
    if subject_org is not None:
        body["denied_org"] = subject_org
    if case_ref is not None:
        body["case_ref"] = case_ref
    if exchange_id is not None:
        body["exchange_id"] = exchange_id
    actors = (org,) if subject_org is None else (org, subject_org)
    return tx.append_ledger("denied", now_ms, body, actors)


def deny(
    tx: Tx, code: DenyCode, *, action: str, org: str, now_ms: int, **where: str | None
) -> Denied:
    ref = record_denial(tx, code=code, action=action, org=org, now_ms=now_ms, **where)
    return Denied(code, DETAILS[code], (ref,))


def settle(outcome: Outcome) -> Done:
    if isinstance(outcome, Denied):
        error = Forbidden(outcome.code, outcome.detail)
        error.ledger = [ref.to_json() for ref in outcome.refs]
        raise error
    return outcome
