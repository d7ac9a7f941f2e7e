"""Who may take part in an exchange step: pure, deny-by-default checks (PROTOCOL §3).

Each check returns the first `DenyCode` that applies, in the protocol's order of
precedence, or None. Facts that live in storage (is there an accession to the
protocol in force? a valid declaration for this case?) are looked up by the
caller and passed in, together with everything else; nothing here does I/O.

- An organisation of role `zvh` or `partner` is a member while its registration is
  active and it has an unrevoked accession to the privacy protocol in force.
- An organisation of role `incidental` takes part in a case only with a valid
  geheimhoudingsverklaring for that case.
- Everybody must be a participant of the case (purpose binding).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import DenyCode

MEMBER_ROLES = frozenset({"zvh", "partner"})
EXCHANGE_ROLES = MEMBER_ROLES | {"incidental"}


@dataclass(frozen=True, slots=True)
class Party:
    org: str
    role: str
    status: str
    accession: bool = False  # an unrevoked accession to the protocol in force
    declaration: bool = False  # a valid declaration for the case at hand


@dataclass(frozen=True, slots=True)
class CaseView:
    case_ref: str
    participants: frozenset[str]


def membership(party: Party) -> DenyCode | None:
    """The sender's role and membership: forbidden-role, then not-a-member."""
    if party.role not in EXCHANGE_ROLES:
        return DenyCode.FORBIDDEN_ROLE
    if party.role in MEMBER_ROLES and (party.status != "active" or not party.accession):
        return DenyCode.NOT_A_MEMBER
    return None


def case_access(party: Party, case: CaseView) -> DenyCode | None:
    """declaration-required, then not-a-participant (sender and recipients alike)."""
    if party.role == "incidental" and (party.status != "active" or not party.declaration):
        return DenyCode.DECLARATION_REQUIRED
    if party.org not in case.participants:
        return DenyCode.NOT_A_PARTICIPANT
    return None


def recipient_access(party: Party, case: CaseView) -> DenyCode | None:
    """The recipients' checks, in order: not-a-member, declaration-required, not-a-participant."""
    if party.role not in EXCHANGE_ROLES:
        return DenyCode.NOT_A_PARTICIPANT
    if party.role in MEMBER_ROLES and (party.status != "active" or not party.accession):
        return DenyCode.NOT_A_MEMBER
    return case_access(party, case)


def may_manage_cases(party: Party) -> DenyCode | None:
    """Only the region's ZVH organisation, as a member, registers and closes cases."""
    if party.role != "zvh":
        return DenyCode.FORBIDDEN_ROLE
    if party.status != "active" or not party.accession:
        return DenyCode.NOT_A_MEMBER
    return None


def may_accede(party: Party) -> DenyCode | None:
    """Accessions are signed by the region's ZVH and its partners."""
    return None if party.role in MEMBER_ROLES else DenyCode.FORBIDDEN_ROLE


def may_declare(party: Party) -> DenyCode | None:
    """Declarations are signed by incidental partners."""
    return None if party.role == "incidental" else DenyCode.FORBIDDEN_ROLE
