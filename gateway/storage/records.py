"""Plain records the stores return. Frozen dataclasses: no SQL, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OrgRecord:
    org: str
    role: str
    domain: str | None
    name: str
    signing_key: bytes
    signing_kid: str
    encryption_key: bytes
    encryption_kid: str
    status: str
    valid_until_ms: int | None
    created_ms: int
    revoked_ms: int | None


@dataclass(frozen=True, slots=True)
class CaseRecord:
    case_ref: str
    theme: str
    status: str
    registered_by: str
    created_ms: int
    closed_ms: int | None
    close_ledger: int | None
    participants: frozenset[str]
    subjects: dict[str, str]  # subject_ref -> pid


@dataclass(frozen=True, slots=True)
class ExchangeRecord:
    exchange_id: str
    kind: str
    case_ref: str
    subject_ref: str
    requester: str
    body_sha256: bytes
    response: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class RecipientRecord:
    exchange_id: str
    org: str
    outcome: str
    payload_sha256: bytes | None
    decision: str | None
    answer_sha256: bytes | None
    answer_response: str | None
    answered_ms: int | None


@dataclass(frozen=True, slots=True)
class InboxMessage:
    message_id: int
    org: str
    kind: str
    exchange_id: str | None
    sender: str
    case_ref: str
    subject_ref: str
    decision: str | None
    reason_code: str | None
    envelope: str | None  # the envelope JSON exactly as received
    created_ms: int
