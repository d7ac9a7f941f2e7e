"""Pure decisions over a wat-request: legal basis, categories, dat-first.

`decide_wat` returns the first failing rule in PROTOCOL §3's order (dat-required,
legal-basis-missing, category-not-allowed) or an allow naming the rules that let
it through. No I/O, no clock, and fail closed: an exception inside a decision is
a deny.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import DenyCode
from gateway.policy.rules import Policy

FIVE_QUESTIONS = ("purpose", "necessity", "subsidiarity", "proportionality", "effectiveness")


@dataclass(frozen=True, slots=True)
class WatCase:
    """Everything the policy needs to know about one wat-request."""

    theme: str
    requester_domain: str | None
    categories: tuple[str, ...]
    legal_basis: Mapping[str, Any]
    dat_known: bool


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    allowed: bool
    code: DenyCode | None
    rule: str
    detail: str
    manual_release: bool = True
    deadline_hours: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": "allow" if self.allowed else "deny",
            "code": None if self.code is None else self.code.value,
            "rule": self.rule,
            "detail": self.detail,
            "manual_release": self.manual_release,
            "deadline_hours": self.deadline_hours,
        }


def _deny(code: DenyCode, rule: str, detail: str) -> PolicyDecision:
    return PolicyDecision(False, code, rule, detail)


def _blank(value: object) -> bool:
    return not isinstance(value, str) or not value.strip()


def legal_basis_gaps(basis: Mapping[str, Any], *, special: bool) -> list[str]:
    """The fields a legal basis lacks under PROTOCOL §3 (empty list: complete)."""
    missing = [
        f for f in ("gdpr_art6", "national_law", "secrecy_permission") if _blank(basis.get(f))
    ]
    permission = basis.get("secrecy_permission")
    if permission == "consent":
        if _blank(basis.get("consent_ref")):
            missing.append("consent_ref")
    elif not _blank(permission):
        answers = basis.get("five_questions")
        if not isinstance(answers, Mapping):  # absent, or not an object of answers
            answers = {}
        missing += [f"five_questions.{q}" for q in FIVE_QUESTIONS if _blank(answers.get(q))]
    if special and _blank(basis.get("gdpr_special")):
        missing.append("gdpr_special")
    return missing


def decide_wat(policy: Policy, case: WatCase) -> PolicyDecision:
    try:
        return _decide(policy, case)
    except Exception as exc:  # fail closed, and say so
        return _deny(
            DenyCode.CATEGORY_NOT_ALLOWED,
            "internal",
            f"the policy could not be evaluated ({type(exc).__name__})",
        )


def _decide(policy: Policy, case: WatCase) -> PolicyDecision:
    theme = policy.themes.get(case.theme)
    if theme is None:
        return _deny(
            DenyCode.CATEGORY_NOT_ALLOWED, "themes", f"theme {case.theme!r} is not in the policy"
        )
    if theme.dat_required and not case.dat_known:
        return _deny(
            DenyCode.DAT_REQUIRED,
            f"themes.{case.theme}.dat_required",
            "the holder has not answered 'known' to a dat-request about this subject",
        )
    unknown = [c for c in case.categories if c not in policy.categories]
    known = [c for c in case.categories if c in policy.categories]
    special = any(policy.categories[c].special for c in known)
    gaps = legal_basis_gaps(case.legal_basis, special=special)
    if gaps:
        return _deny(
            DenyCode.LEGAL_BASIS_MISSING, "legal-basis.complete", "missing: " + ", ".join(gaps)
        )
    # PROTOCOL §3 precedence: a basis that the categories do not admit
    # (legal-basis-missing) is answered before a category the requester may not ask.
    basis = case.legal_basis
    for cat in known:
        rule = policy.categories[cat]
        if basis.get("gdpr_art6") not in rule.gdpr_art6:
            return _deny(
                DenyCode.LEGAL_BASIS_MISSING,
                f"categories.{cat}.gdpr_art6",
                f"category {cat!r} admits GDPR art. 6 ({'/'.join(rule.gdpr_art6)})",
            )
        if basis.get("secrecy_permission") not in rule.secrecy:
            return _deny(
                DenyCode.LEGAL_BASIS_MISSING,
                f"categories.{cat}.secrecy",
                f"category {cat!r} admits secrecy permission {' / '.join(rule.secrecy)}",
            )
        if rule.special and basis.get("gdpr_special") not in rule.gdpr_special:
            return _deny(
                DenyCode.LEGAL_BASIS_MISSING,
                f"categories.{cat}.gdpr_special",
                f"category {cat!r} needs an exception: {' / '.join(rule.gdpr_special)}",
            )
    if unknown or not case.categories:
        return _deny(
            DenyCode.CATEGORY_NOT_ALLOWED,
            "categories",
            f"unknown categories: {', '.join(unknown) or '(none requested)'}",
        )
    requesters: dict[str, tuple[str, ...]] = {str(k): v for k, v in theme.requesters.items()}
    allowed = requesters.get(case.requester_domain or "")
    if allowed is None:
        return _deny(
            DenyCode.CATEGORY_NOT_ALLOWED,
            f"themes.{case.theme}.requesters",
            f"requesters of domain {case.requester_domain!r} may ask nothing in this theme",
        )
    for cat in case.categories:
        if cat not in allowed:
            return _deny(
                DenyCode.CATEGORY_NOT_ALLOWED,
                f"themes.{case.theme}.requesters.{case.requester_domain}",
                f"category {cat!r} may not be asked by domain {case.requester_domain!r}",
            )
    manual = any(policy.categories[c].manual_release for c in case.categories)
    return PolicyDecision(
        True,
        None,
        f"themes.{case.theme}.requesters.{case.requester_domain}",
        "allowed by the policy",
        manual,
        theme.deadline_hours,
    )
