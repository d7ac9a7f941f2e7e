"""Property tests of the pure policy functions (gateway.policy): deny by default, the
legal-basis completeness rule of PROTOCOL §3, the party checks for every role, and
`parse_policy` refusing what it cannot trust, naming the rule. One small HTTP test:
a declaration for case A never admits case B."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.errors import ConfigError, DenyCode
from gateway.policy.access import (
    EXCHANGE_ROLES,
    MEMBER_ROLES,
    CaseView,
    Party,
    case_access,
    may_manage_cases,
    membership,
    recipient_access,
)
from gateway.policy.decide import FIVE_QUESTIONS, WatCase, decide_wat, legal_basis_gaps
from gateway.policy.rules import Policy, default_policy_text, parse_policy
from tests.conftest import Network
from tests.policy.support import FIVE, Outcome, allow, world

POLICY = parse_policy(default_policy_text())
DOMAINS = ("zorg", "straf", "bestuur", "jeugd", "sociaal")
ART6 = ("a", "b", "c", "d", "e", "f")
SECRECY = ("consent", "statutory-duty", "conflict-of-duties")
SPECIAL = (*"abcdefghij", "art10")
ALWAYS_REQUIRED = ("gdpr_art6", "national_law", "secrecy_permission")
BLANKS: tuple[Any, ...] = ("", " ", "\t\n", None)
FAST = settings(max_examples=300, deadline=None)

names = st.from_regex(r"[a-z][a-z0-9-]{1,20}", fullmatch=True)
themes = st.sampled_from(sorted(POLICY.themes)) | names
domains = st.sampled_from(DOMAINS) | names | st.none()
categories = st.lists(
    st.sampled_from(sorted(POLICY.categories)) | names, min_size=0, max_size=4, unique=True
)
texts = st.sampled_from(["", " ", "x", "WGS art. 7"]) | st.text(max_size=8)
maybe_text: st.SearchStrategy[Any] = texts | st.none() | st.integers()


def _enum(values: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values) | maybe_text


random_basis = st.fixed_dictionaries(
    {},
    optional={
        "gdpr_art6": _enum(ART6),
        "gdpr_special": _enum(SPECIAL),
        "national_law": maybe_text,
        "secrecy_permission": _enum(SECRECY),
        "consent_ref": maybe_text,
        "five_questions": st.fixed_dictionaries({}, optional=dict.fromkeys(FIVE_QUESTIONS, texts)),
    },
)
# Complete in form (every field there and non-empty); admitted or not by a category.
complete_basis = st.fixed_dictionaries(
    {
        "gdpr_art6": st.sampled_from(ART6),
        "gdpr_special": st.sampled_from(SPECIAL),
        "national_law": st.just("WGS art. 7"),
        "secrecy_permission": st.sampled_from(SECRECY),
        "consent_ref": st.just("toestemming-1"),
        "five_questions": st.just(FIVE),
    }
)
bases = random_basis | complete_basis


def _filled(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def oracle_allows(policy: Policy, case: WatCase) -> bool:
    """PROTOCOL §3 and the policy file's own words (default_policy.toml), written out
    independently of gateway.policy.decide."""
    theme = policy.themes.get(case.theme)
    if theme is None or (theme.dat_required and not case.dat_known):
        return False
    if not case.categories or any(c not in policy.categories for c in case.categories):
        return False
    allowed = {str(k): v for k, v in theme.requesters.items()}.get(case.requester_domain or "")
    if allowed is None or any(c not in allowed for c in case.categories):
        return False
    basis = case.legal_basis
    if not all(_filled(basis.get(f)) for f in ALWAYS_REQUIRED):
        return False
    if basis["secrecy_permission"] == "consent":
        if not _filled(basis.get("consent_ref")):
            return False
    else:
        answers = basis.get("five_questions")
        answers = answers if isinstance(answers, dict) else {}
        if not all(_filled(answers.get(q)) for q in FIVE_QUESTIONS):
            return False
    for name in case.categories:
        rule = policy.categories[name]
        if basis["gdpr_art6"] not in rule.gdpr_art6:
            return False
        if basis["secrecy_permission"] not in rule.secrecy:
            return False
        if rule.special and basis.get("gdpr_special") not in rule.gdpr_special:
            return False
    return True


# -- decide_wat: deny by default ---------------------------------------------------------------


def _common(options: Sequence[Sequence[str]], fallback: tuple[str, ...]) -> tuple[str, ...]:
    """The values every category admits, in a stable order (all of them if none is common)."""
    if not options:
        return fallback
    common = set(options[0]).intersection(*options[1:])
    return tuple(sorted(common)) or fallback


@st.composite
def plausible_cases(draw: st.DrawFn) -> WatCase:
    """A wat-request the policy could well allow (a theme, a domain that may ask there,
    categories it may ask, a basis those categories admit), perhaps with one thing off."""
    theme = draw(st.sampled_from(sorted(POLICY.themes)))
    rule = POLICY.themes[theme]
    domain = draw(st.sampled_from(sorted(rule.requesters)))
    cats = draw(
        st.lists(st.sampled_from(rule.requesters[domain]), min_size=1, max_size=3, unique=True)
    )
    cat_rules = [POLICY.categories[c] for c in cats]
    specials = [r.gdpr_special for r in cat_rules if r.special]
    secrecy = draw(st.sampled_from(_common([r.secrecy for r in cat_rules], SECRECY)))
    basis: dict[str, Any] = {
        "gdpr_art6": draw(st.sampled_from(_common([r.gdpr_art6 for r in cat_rules], ART6))),
        "national_law": "WGS art. 7",
        "secrecy_permission": secrecy,
    }
    basis.update({"consent_ref": "t-1"} if secrecy == "consent" else {"five_questions": FIVE})
    if specials:
        basis["gdpr_special"] = draw(st.sampled_from(_common(specials, SPECIAL)))
    case = WatCase(theme, domain, tuple(cats), basis, draw(st.sampled_from((True, True, False))))
    change = draw(st.sampled_from(["none"] * 4 + ["theme", "domain", "categories", "basis"]))
    if change == "theme":
        case = dataclasses.replace(case, theme=draw(themes))
    elif change == "domain":
        case = dataclasses.replace(case, requester_domain=draw(domains))
    elif change == "categories":
        case = dataclasses.replace(case, categories=tuple(draw(categories)))
    elif change == "basis":
        field = draw(st.sampled_from(sorted(basis)))
        value = draw(st.sampled_from((*BLANKS, *ART6, *SECRECY, "art10", "x")))
        case = dataclasses.replace(case, legal_basis={**basis, field: value})
    return case


random_cases = st.builds(WatCase, themes, domains, categories.map(tuple), bases, st.booleans())


@FAST
@given(random_cases | plausible_cases())
def test_decide_wat_allows_exactly_what_the_policy_allows(case: WatCase) -> None:
    decision = decide_wat(POLICY, case)
    assert decision.allowed == oracle_allows(POLICY, case), (case, decision)
    assert (decision.code is None) == decision.allowed
    assert decision.rule
    if decision.allowed:
        theme = POLICY.themes[case.theme]
        assert decision.deadline_hours == theme.deadline_hours
        manual = any(POLICY.categories[c].manual_release for c in case.categories)
        assert decision.manual_release == manual


@FAST
@given(
    theme=themes,
    domain=domains,
    cats=categories,
    basis=bases,
    dat_known=st.booleans(),
    stranger=names,
    where=st.sampled_from(["theme", "domain", "category"]),
)
def test_without_a_matching_rule_the_decision_is_deny(
    *,
    theme: str,
    domain: str | None,
    cats: list[str],
    basis: dict[str, Any],
    dat_known: bool,
    stranger: str,
    where: str,
) -> None:
    """A theme, requester domain or category the policy does not name: never allowed."""
    if where == "theme":
        assume(stranger not in POLICY.themes)
        theme = stranger
    elif where == "domain":
        assume(stranger not in DOMAINS)
        domain = stranger
    else:
        assume(stranger not in POLICY.categories)
        cats = [*cats, stranger]
    decision = decide_wat(POLICY, WatCase(theme, domain, tuple(cats), basis, dat_known))
    assert not decision.allowed
    assert decision.code is not None
    if where == "theme":
        assert (decision.code, decision.rule) == (DenyCode.CATEGORY_NOT_ALLOWED, "themes")


def test_an_empty_request_is_denied() -> None:
    for theme in POLICY.themes:
        decision = decide_wat(POLICY, WatCase(theme, "bestuur", (), {}, True))
        assert not decision.allowed


# -- the legal-basis completeness rule ---------------------------------------------------------


@st.composite
def incomplete(draw: st.DrawFn) -> tuple[WatCase, str]:
    """A complete basis (every field the rule could ask for) with one required field
    removed or blanked; returns the case and the field that went."""
    theme = draw(st.sampled_from(sorted(POLICY.themes)))
    cats = draw(categories)
    special = any(POLICY.categories[c].special for c in cats if c in POLICY.categories)
    secrecy = draw(st.sampled_from(SECRECY))
    basis: dict[str, Any] = {
        "gdpr_art6": draw(st.sampled_from(ART6)),
        "gdpr_special": draw(st.sampled_from(SPECIAL)),
        "national_law": "WGS art. 7",
        "secrecy_permission": secrecy,
        "consent_ref": "toestemming-1",
        "five_questions": dict(FIVE),
    }
    required = ["gdpr_art6", "national_law", "secrecy_permission"]
    required += ["consent_ref"] if secrecy == "consent" else [f"five_questions.{q}" for q in FIVE]
    required += ["gdpr_special"] if special else []
    field = draw(st.sampled_from(required))
    blank = draw(st.sampled_from((*BLANKS, "remove")))
    outer, _, inner = field.partition(".")
    target = basis["five_questions"] if inner else basis
    key = inner or outer
    if blank == "remove":
        del target[key]
    else:
        target[key] = blank
    if inner and draw(st.booleans()) and draw(st.booleans()):
        # Sometimes the five answers go altogether.
        del basis["five_questions"]
    case = WatCase(theme, draw(domains), tuple(cats), basis, draw(st.booleans()))
    return case, field


@FAST
@given(incomplete())
def test_an_incomplete_legal_basis_is_never_allowed(drawn: tuple[WatCase, str]) -> None:
    case, field = drawn
    special = any(POLICY.categories[c].special for c in case.categories if c in POLICY.categories)
    assert field in legal_basis_gaps(case.legal_basis, special=special)
    decision = decide_wat(POLICY, case)
    assert not decision.allowed
    # legal-basis-missing, or a code PROTOCOL §3 answers before it.
    assert decision.code in (DenyCode.DAT_REQUIRED, DenyCode.LEGAL_BASIS_MISSING), decision
    if case.dat_known or not POLICY.themes[case.theme].dat_required:
        assert (decision.code, decision.rule) == (
            DenyCode.LEGAL_BASIS_MISSING,
            "legal-basis.complete",
        )
        assert field in decision.detail


@FAST
@given(basis=random_basis, special=st.booleans())
def test_legal_basis_gaps_is_empty_only_for_a_complete_basis(
    basis: dict[str, Any], special: bool
) -> None:
    complete = all(
        _filled(basis.get(f)) for f in ("gdpr_art6", "national_law", "secrecy_permission")
    )
    if basis.get("secrecy_permission") == "consent":
        complete = complete and _filled(basis.get("consent_ref"))
    else:
        answers = basis.get("five_questions")
        answers = answers if isinstance(answers, dict) else {}
        complete = complete and all(_filled(answers.get(q)) for q in FIVE_QUESTIONS)
    if special:
        complete = complete and _filled(basis.get("gdpr_special"))
    assert (legal_basis_gaps(basis, special=special) == []) == complete


# -- the party checks ----------------------------------------------------------------------------

roles = st.sampled_from(("zvh", "partner", "incidental", "hub")) | names
statuses = st.sampled_from(("active", "revoked")) | names


@st.composite
def parties(draw: st.DrawFn) -> tuple[Party, CaseView]:
    org = draw(st.sampled_from(("politie-test", "vt-test", "woon-test", "zvh-test")))
    others = draw(st.frozensets(st.sampled_from(("politie-test", "vt-test", "ggz-test"))))
    participants = others | ({org} if draw(st.booleans()) else set())
    p = Party(org, draw(roles), draw(statuses), draw(st.booleans()), draw(st.booleans()))
    return p, CaseView("C-1", frozenset(participants))


def _may_take_part(p: Party, case: CaseView) -> bool:
    if p.role not in EXCHANGE_ROLES or p.status != "active" or p.org not in case.participants:
        return False
    return p.accession if p.role in MEMBER_ROLES else p.declaration


@FAST
@given(parties())
def test_party_checks_deny_by_default(drawn: tuple[Party, CaseView]) -> None:
    p, case = drawn
    as_sender = membership(p) or case_access(p, case)
    as_recipient = recipient_access(p, case)
    ok = _may_take_part(p, case)
    assert (as_sender is None) == ok, (p, case, as_sender)
    assert (as_recipient is None) == ok, (p, case, as_recipient)
    if p.status != "active" or not (p.accession if p.role in MEMBER_ROLES else p.declaration):
        assert as_sender is not None
        assert as_recipient is not None


@FAST
@given(parties())
def test_the_party_codes_are_the_protocols(drawn: tuple[Party, CaseView]) -> None:
    p, case = drawn
    lacks_accession = p.status != "active" or not p.accession
    lacks_declaration = p.status != "active" or not p.declaration
    if p.role in MEMBER_ROLES and lacks_accession:
        assert membership(p) == DenyCode.NOT_A_MEMBER
        assert recipient_access(p, case) == DenyCode.NOT_A_MEMBER
    if p.role == "incidental":
        assert membership(p) is None  # incidental partners do not accede
        if lacks_declaration:
            # Before not-a-participant (PROTOCOL §3), whether in the case or not.
            assert case_access(p, case) == DenyCode.DECLARATION_REQUIRED
            assert recipient_access(p, case) == DenyCode.DECLARATION_REQUIRED
    if p.role not in EXCHANGE_ROLES:
        assert membership(p) == DenyCode.FORBIDDEN_ROLE
    manage = may_manage_cases(p)
    assert (manage is None) == (p.role == "zvh" and not lacks_accession)


# -- parse_policy ---------------------------------------------------------------------------------


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(type(v))


def to_toml(data: Mapping[str, Any]) -> str:
    """Just enough TOML for policy files: scalars, lists and nested tables."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], prefix: list[str]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append("[" + ".".join(_key(p) for p in prefix) + "]")
        lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
        for k, v in tables.items():
            emit(v, [*prefix, k])

    emit(data, [])
    return "\n".join(lines) + "\n"


def default_raw() -> dict[str, Any]:
    return tomllib.loads(default_policy_text())


def refused(raw: Mapping[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_policy(to_toml(raw), "policy.toml")
    return str(info.value)


def test_the_toml_writer_round_trips_the_default_policy() -> None:
    assert parse_policy(to_toml(default_raw())) == POLICY


@FAST
@given(st.lists(st.sampled_from(["", "   ", "# commentaar", "\t", "#"]), max_size=5))
def test_parse_policy_refuses_an_empty_file(lines: list[str]) -> None:
    with pytest.raises(ConfigError, match="empty"):
        parse_policy("\n".join(lines), "policy.toml")


@FAST
@given(
    theme=st.sampled_from(sorted(POLICY.themes)),
    data=st.data(),
    unknown=names.filter(lambda n: n not in POLICY.categories),
)
def test_parse_policy_refuses_a_theme_listing_an_unknown_category(
    theme: str, data: st.DataObject, unknown: str
) -> None:
    raw = default_raw()
    requesters = raw["themes"][theme]["requesters"]
    domain = data.draw(st.sampled_from(sorted(requesters)))
    requesters[domain] = [*requesters[domain], unknown]
    message = refused(raw)
    assert f"themes.{theme}.requesters.{domain}" in message
    assert unknown in message


@FAST
@given(category=st.sampled_from(sorted(POLICY.categories)), listed=st.booleans())
def test_parse_policy_refuses_a_special_category_without_gdpr_special(
    category: str, listed: bool
) -> None:
    raw = default_raw()
    rule = raw["categories"][category]
    rule["special"] = True
    if listed:
        rule["gdpr_special"] = []
    else:
        rule.pop("gdpr_special", None)
    message = refused(raw)
    assert f"categories.{category}" in message
    assert "gdpr_special" in message


def _known_fields(where: str) -> set[str]:
    return {
        "top": {"version", "reason_codes", "categories", "themes"},
        "category": {
            "description",
            "special",
            "gdpr_special",
            "gdpr_art6",
            "secrecy",
            "manual_release",
        },
        "theme": {"description", "dat_required", "deadline_hours", "requesters"},
        "requesters": set(DOMAINS),
    }[where]


@FAST
@given(
    where=st.sampled_from(["top", "category", "theme", "requesters"]),
    key=names,
    data=st.data(),
)
def test_parse_policy_refuses_unknown_keys(where: str, key: str, data: st.DataObject) -> None:
    assume(key not in _known_fields(where))
    raw = default_raw()
    if where == "top":
        table, path = raw, key
    elif where == "category":
        name = data.draw(st.sampled_from(sorted(POLICY.categories)))
        table, path = raw["categories"][name], f"categories.{name}.{key}"
    elif where == "theme":
        name = data.draw(st.sampled_from(sorted(POLICY.themes)))
        table, path = raw["themes"][name], f"themes.{name}.{key}"
    else:
        name = data.draw(st.sampled_from(sorted(POLICY.themes)))
        table, path = raw["themes"][name]["requesters"], f"themes.{name}.requesters.{key}"
    table[key] = ["contact"] if where == "requesters" else "x"
    message = refused(raw)
    assert path in message, message


# -- a declaration is for one case (through the hub) ----------------------------------------


async def test_a_declaration_for_case_a_never_admits_case_b(bare_network: Network) -> None:
    """Signed for C-1: refused in every other case, however alike its reference."""
    others = ("C-10", "c-1", "C-1.1", "C-1x", "C-2")
    woon_denied = frozenset({("woon-test", "declaration-required")})
    async with world(bare_network) as w:
        for ref in ("C-1", *others):
            await w.open_case(ref, participants=("politie-test", "woon-test"))
        await w.expect(await w.declare("woon-test", "C-1"), allow(201, "declaration"))
        assert (await w.dat("zvh-test", ["woon-test"], case_ref="C-1")).status == 202
        for ref in others:
            to_woon = await w.dat("zvh-test", ["woon-test"], case_ref=ref)
            await w.expect(to_woon, Outcome(403, "declaration-required", denied=woon_denied))
            from_woon = await w.dat("woon-test", ["politie-test"], case_ref=ref)
            await w.expect(from_woon, Outcome(403, "declaration-required"))
