"""Who may use the national check at a hub: pure, deny-by-default (PROTOCOL §6, §7).

- Pseudonym evaluation is for members: the region's ZVH and its partners with an
  active accession to the privacy protocol in force. Hubs and incidental partners
  may not (an incidental partner works in one case and never needs a pid).
- A known-check is for the organisations the hub's `[national]` section names
  (by default the region's organisations of role `zvh`), as members, and only for
  the themes it allows as purpose.
"""

from __future__ import annotations

from collections.abc import Collection

from gateway.errors import DenyCode
from gateway.policy.access import MEMBER_ROLES, Party


def may_evaluate(party: Party) -> DenyCode | None:
    if party.role not in MEMBER_ROLES:
        return DenyCode.FORBIDDEN_ROLE
    if party.status != "active" or not party.accession:
        return DenyCode.NOT_A_MEMBER
    return None


def may_run_known_check(
    party: Party, purpose: str, *, orgs: Collection[str], themes: Collection[str]
) -> DenyCode | None:
    if party.role not in MEMBER_ROLES or party.org not in orgs or purpose not in themes:
        return DenyCode.FORBIDDEN_ROLE
    if party.status != "active" or not party.accession:
        return DenyCode.NOT_A_MEMBER
    return None
