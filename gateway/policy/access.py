"""Who may take part in an exchange step: pure, deny-by-default checks (PROTOCOL §3).

Each check returns the first `DenyCode` that applies, in the protocol's order of
precedence, or None. They take everything they need as arguments (including
`now_ms`) and do no I/O, so they can run inside a storage job and in tests alike.

Membership in this release: an organisation of role `zvh` or `partner` is a member
while its registration is active. Accessions to the privacy protocol (the Policy
issue) will narrow `is_member`. An `incidental` organisation needs a valid
geheimhoudingsverklaring for the case; until declarations can be recorded none is
valid, so incidental partners receive nothing (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import DenyCode


@dataclass(frozen=True, slots=True)
class Party:
    org: str
    role: str
    status: str


@dataclass(frozen=True, slots=True)
class CaseView:
    case_ref: str
    participants: frozenset[str]


HasDeclaration = Callable[[str, str, int], bool]  # (org, case_ref, now_ms) -> bool


def no_declarations(org: str, case_ref: str, now_ms: int) -> bool:
    """The declaration register before declarations exist: nobody has one."""
    return False


def membership(party: Party) -> DenyCode | None:
    if party.role in ("zvh", "partner") and party.status != "active":
        return DenyCode.NOT_A_MEMBER
    if party.role not in ("zvh", "partner", "incidental"):
        return DenyCode.FORBIDDEN_ROLE
    return None


def case_access(
    party: Party, case: CaseView, now_ms: int, has_declaration: HasDeclaration
) -> DenyCode | None:
    """declaration-required, then not-a-participant (sender and recipients alike)."""
    if party.role == "incidental" and (
        party.status != "active" or not has_declaration(party.org, case.case_ref, now_ms)
    ):
        return DenyCode.DECLARATION_REQUIRED
    if party.org not in case.participants:
        return DenyCode.NOT_A_PARTICIPANT
    return None


def recipient_access(
    party: Party, case: CaseView, now_ms: int, has_declaration: HasDeclaration
) -> DenyCode | None:
    """The recipients' checks, in order: not-a-member, declaration-required, not-a-participant."""
    if party.role in ("zvh", "partner") and party.status != "active":
        return DenyCode.NOT_A_MEMBER
    if party.role not in ("zvh", "partner", "incidental"):
        return DenyCode.NOT_A_PARTICIPANT
    return case_access(party, case, now_ms, has_declaration)


def may_manage_cases(party: Party) -> DenyCode | None:
    """Only the region's ZVH organisation registers, extends and closes cases."""
    if party.role != "zvh":
        return DenyCode.FORBIDDEN_ROLE
    if party.status != "active":
        return DenyCode.NOT_A_MEMBER
    return None
