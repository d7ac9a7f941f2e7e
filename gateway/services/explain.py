"""`zvh-gateway policy explain`: the hub's decision on a wat-request, and the rule.

Runs the same checks, in the same order and with the same functions, as the hub's
wat-request job (membership, case, declaration, participation, then the policy),
against a hub's database read-only, without recording anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from gateway.errors import DenyCode
from gateway.models import LegalBasis
from gateway.policy.access import CaseView, case_access, membership, recipient_access
from gateway.policy.decide import WatCase, decide_wat
from gateway.policy.rules import Policy
from gateway.services.parties import party
from gateway.storage import policy_store, stores
from gateway.storage.database import Tx

_CATEGORY = re.compile(r"^[a-z][a-z0-9-]{1,62}$")


def _deny(code: DenyCode, rule: str, detail: str) -> dict[str, Any]:
    return {"decision": "deny", "status": 403, "code": code.value, "rule": rule, "detail": detail}


def _error(status: int, code: str, detail: str) -> dict[str, Any]:
    return {"decision": "error", "status": status, "code": code, "rule": None, "detail": detail}


def explain_wat(tx: Tx, policy: Policy, request: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    orgs = {o.org: o for o in stores.list_orgs(tx)}
    sender = orgs.get(str(request.get("requester", "")))
    if sender is None or sender.status != "active":
        return _error(401, "unauthenticated", "the requester is not a registered organisation")
    # The hub's 400 checks on the request itself come before any 403 (PROTOCOL §3).
    try:
        LegalBasis.model_validate_json(json.dumps(request.get("legal_basis") or {}))
    except ValidationError:
        return _error(400, "invalid-request", "legal_basis does not validate")
    categories = request.get("categories")
    if (
        not isinstance(categories, list)
        or not categories
        or not all(isinstance(c, str) and _CATEGORY.fullmatch(c) for c in categories)
        or len(set(categories)) != len(categories)
    ):
        return _error(400, "invalid-request", "categories must be distinct category names")
    if request.get("holder") == sender.org:
        return _error(400, "invalid-request", "a request to yourself")
    case_ref = str(request.get("case_ref", ""))
    me = party(tx, sender, now_ms, case_ref)
    if code := membership(me):
        return _deny(code, "membership", "the requester's role or accession")
    case = stores.get_case(tx, case_ref)
    if case is None:
        return _error(404, "not-found", "unknown case")
    view = CaseView(case.case_ref, case.participants)
    if code := case_access(me, view):
        return _deny(code, "case", "the requester's declaration or participation")
    if case.status == "closed":
        return _error(409, "case-closed", "the case is closed")
    subject_ref = str(request.get("subject_ref", ""))
    if subject_ref not in case.subjects:
        return _error(400, "invalid-request", "subject_ref is not a subject of this case")
    holder = orgs.get(str(request.get("holder", "")))
    if holder is None or holder.role == "hub":
        return _error(400, "invalid-request", "unknown holder")
    if code := recipient_access(party(tx, holder, now_ms, case_ref), view):
        return _deny(code, "holder", "the holder's membership, declaration or participation")
    basis = request.get("legal_basis") or {}
    decision = decide_wat(
        policy,
        WatCase(
            theme=case.theme,
            requester_domain=sender.domain,
            categories=tuple(str(c) for c in request.get("categories", [])),
            legal_basis={k: v for k, v in dict(basis).items() if v is not None},
            dat_known=policy_store.dat_known(tx, case_ref, subject_ref, holder.org),
        ),
    )
    out = decision.to_json()
    out["status"] = 202 if decision.allowed else 403
    return out
