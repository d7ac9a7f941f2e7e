"""Build the policy's view of an organisation from the directory and storage.

Runs inside storage jobs (on the database thread), so membership and declarations
are read in the same transaction as the decision they feed.
"""

from __future__ import annotations

from gateway.policy.access import MEMBER_ROLES, Party
from gateway.storage import policy_store
from gateway.storage.database import Tx
from gateway.storage.records import OrgRecord


def party(tx: Tx, rec: OrgRecord, now_ms: int, case_ref: str | None = None) -> Party:
    accession = rec.role in MEMBER_ROLES and policy_store.is_member(tx, rec.org, now_ms)
    declaration = (
        rec.role == "incidental"
        and case_ref is not None
        and policy_store.has_declaration(tx, rec.org, case_ref, now_ms)
    )
    return Party(rec.org, rec.role, rec.status, accession, declaration)
