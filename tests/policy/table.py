"""The scenario table of the policy layer (PROTOCOL §3 and §7): every 403 and 409 code,
each allow path, the order of precedence where two codes apply, and the accession and
declaration cases. `test_table` runs every row against a hub; `test_explain` runs the
wat-request rows through `policy explain` first and compares.

Every row starts from a `bare_network` on which `members` have signed their accession
(by default the four members). Cases are registered by zvh-test; the default case C-1
(theme huiselijk-geweld) has participants zvh-test, politie-test and vt-test.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.adapters.client import Received
from gateway.clock import SystemClock
from gateway.errors import DenyCode
from tests.conftest import MEMBERS
from tests.policy.support import (
    BASIS,
    CONSENT_BASIS,
    CRIMINAL_BASIS,
    DAY_MS,
    FIVE,
    PROTOCOL_V1,
    SUBJECT,
    Outcome,
    Prepare,
    Step,
    WatSpec,
    World,
    allow,
    conflict,
    forbidden,
    invalid,
    with_,
    without,
)
from tests.web.helpers import Reply, assert_ok

NAM = DenyCode.NOT_A_MEMBER
DR = DenyCode.DECLARATION_REQUIRED
NAP = DenyCode.NOT_A_PARTICIPANT
FR = DenyCode.FORBIDDEN_ROLE
DAT = DenyCode.DAT_REQUIRED
LBM = DenyCode.LEGAL_BASIS_MISSING
CNA = DenyCode.CATEGORY_NOT_ALLOWED
COMPLETE = "legal-basis.complete"
WITHOUT_GGZ = ("zvh-test", "politie-test", "vt-test")
WITH_GGZ = ("politie-test", "vt-test", "ggz-test")
WITH_WOON = ("politie-test", "vt-test", "woon-test")


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    act: Step
    want: Outcome
    members: tuple[str, ...] = MEMBERS
    # After the act: checks of their own (the reply's body is passed in).
    after: Callable[[World, dict[str, Any]], Awaitable[None]] | None = None
    bug: str | None = None


@dataclass(frozen=True, slots=True)
class WatRow:
    """A wat-request scenario: `prepare` builds the state, then `spec` is sent."""

    name: str
    prepare: Prepare
    spec: WatSpec
    want: Outcome
    members: tuple[str, ...] = MEMBERS
    bug: str | None = None
    # A bug of `policy explain` only (the hub's answer is right): xfails test_explain.
    explain_bug: str | None = None

    def row(self) -> Row:
        async def act(w: World) -> Reply:
            await self.prepare(w)
            return await w.wat(self.spec)

        async def after(w: World, body: dict[str, Any]) -> None:
            messages = [
                m for m in await w.client(self.spec.holder).fetch() if m.kind == "wat-request"
            ]
            if self.want.status == 202:
                [message] = messages
                assert message.exchange_id == body["exchange_id"]
                assert message.wat is not None
                assert message.wat["categories"] == list(self.spec.categories)
            else:
                assert messages == [], "a refused wat-request reached the holder"

        return Row(self.name, act, self.want, self.members, after, self.bug)


# -- set-ups ---------------------------------------------------------------------------------


async def case_only(w: World) -> None:
    await w.open_case()


async def known_by_vt(w: World) -> None:
    await w.open_case()
    await w.dat_answered("vt-test")


async def known_by_police(w: World) -> None:
    await w.open_case()
    await w.dat_answered("politie-test")


async def zsm_case(w: World) -> None:
    await w.open_case(theme="zsm-advies")


async def ggz_in_case_known(w: World) -> None:
    await w.open_case(participants=WITH_GGZ)
    await w.dat_answered("vt-test")


async def woon_in_case(w: World) -> None:
    await w.open_case(participants=WITH_WOON)
    await w.dat_answered("vt-test")


async def known_by_vt_then_closed(w: World) -> None:
    await known_by_vt(w)
    await w.close_case()


async def not_known_by_vt(w: World) -> None:
    await w.open_case()
    await w.dat_answered("vt-test", "not-known")


async def known_about_another_subject(w: World) -> None:
    await w.open_case(subjects=(SUBJECT, "S2"))
    await w.dat_answered("vt-test", subject_ref="S2")


async def declared_woon_and_known_by_police(w: World) -> None:
    await w.open_case(participants=WITH_WOON)
    assert_ok(await w.declare("woon-test"), 201)
    await w.dat_answered("politie-test")


async def radicalisation_with_declared_woon(w: World) -> None:
    await w.open_case(theme="radicalisering", participants=WITH_WOON)
    assert_ok(await w.declare("woon-test"), 201)
    await w.dat_answered("politie-test")


def wat(
    requester: str,
    holder: str,
    categories: tuple[str, ...],
    basis: dict[str, Any],
    **where: str,
) -> WatSpec:
    return WatSpec(requester, holder, categories, basis, **where)


def police_asks_vt(categories: tuple[str, ...], basis: dict[str, Any]) -> WatSpec:
    return wat("politie-test", "vt-test", categories, basis)


# -- the wat-request rows (also `policy explain`'s acceptance cases) -------------------------

WAT_ROWS: tuple[WatRow, ...] = (
    # allow
    WatRow(
        "allow/wat-delivered",
        known_by_vt,
        police_asks_vt(("contact",), BASIS),
        allow(202, "wat-request"),
    ),
    WatRow(
        "allow/wat-special-category-with-exception",
        known_by_vt,
        police_asks_vt(("contact", "justitiele-gegevens"), CRIMINAL_BASIS),
        allow(202, "wat-request"),
    ),
    WatRow(
        "allow/wat-on-consent",
        known_by_vt,
        wat("zvh-test", "vt-test", ("hulpverlening",), CONSENT_BASIS),
        allow(202, "wat-request"),
    ),
    WatRow(
        "allow/declared-incidental-asks",
        declared_woon_and_known_by_police,
        wat("woon-test", "politie-test", ("woon-situatie",), BASIS),
        allow(202, "wat-request"),
    ),
    WatRow(
        "allow/zsm-advies-waives-dat-required",
        zsm_case,
        police_asks_vt(("contact", "veiligheidsrisico"), BASIS),
        allow(202, "wat-request"),
    ),
    # the sender
    WatRow(
        "not-a-member/wat-sender",
        ggz_in_case_known,
        wat("ggz-test", "vt-test", ("contact",), BASIS),
        forbidden(NAM),
        members=WITHOUT_GGZ,
    ),
    WatRow(
        "declaration-required/wat-sender",
        woon_in_case,
        wat("woon-test", "vt-test", ("contact",), BASIS),
        forbidden(DR),
    ),
    WatRow(
        "not-a-participant/wat-sender",
        known_by_vt,
        wat("ggz-test", "vt-test", ("contact",), BASIS),
        forbidden(NAP),
    ),
    # the holder
    WatRow(
        "not-a-member/wat-holder",
        ggz_in_case_known,
        wat("politie-test", "ggz-test", ("contact",), BASIS),
        forbidden(NAM),
        members=WITHOUT_GGZ,
    ),
    WatRow(
        "declaration-required/wat-holder",
        woon_in_case,
        wat("politie-test", "woon-test", ("contact",), BASIS),
        forbidden(DR),
    ),
    WatRow(
        "not-a-participant/wat-holder",
        known_by_vt,
        wat("politie-test", "ggz-test", ("contact",), BASIS),
        forbidden(NAP),
    ),
    # dat-required
    WatRow(
        "dat-required/no-dat",
        case_only,
        police_asks_vt(("contact",), BASIS),
        forbidden(DAT, "themes.huiselijk-geweld.dat_required"),
    ),
    WatRow(
        "dat-required/answered-not-known",
        not_known_by_vt,
        police_asks_vt(("contact",), BASIS),
        forbidden(DAT, "themes.huiselijk-geweld.dat_required"),
    ),
    WatRow(
        "dat-required/known-by-another-holder",
        known_by_police,
        police_asks_vt(("contact",), BASIS),
        forbidden(DAT, "themes.huiselijk-geweld.dat_required"),
    ),
    WatRow(
        "dat-required/known-about-another-subject",
        known_about_another_subject,
        police_asks_vt(("contact",), BASIS),
        forbidden(DAT, "themes.huiselijk-geweld.dat_required"),
    ),
    # legal-basis-missing
    WatRow(
        "legal-basis-missing/field-missing",
        known_by_vt,
        police_asks_vt(("contact",), without(BASIS, "national_law")),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/empty-string",
        known_by_vt,
        police_asks_vt(("contact",), with_(BASIS, gdpr_art6="")),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/blank-secrecy-permission",
        known_by_vt,
        police_asks_vt(("contact",), with_(BASIS, secrecy_permission="")),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/empty-basis",
        known_by_vt,
        police_asks_vt(("contact",), {}),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/consent-without-consent-ref",
        known_by_vt,
        wat("zvh-test", "vt-test", ("hulpverlening",), without(CONSENT_BASIS, "consent_ref")),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/consent-ref-empty",
        known_by_vt,
        wat("zvh-test", "vt-test", ("hulpverlening",), with_(CONSENT_BASIS, consent_ref="")),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/one-of-five-answers-missing",
        known_by_vt,
        police_asks_vt(("contact",), without(BASIS, "five_questions", "effectiveness")),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/one-of-five-answers-empty",
        known_by_vt,
        police_asks_vt(("contact",), with_(BASIS, five_questions={**FIVE, "subsidiarity": ""})),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/no-five-answers-without-consent",
        known_by_vt,
        police_asks_vt(("contact",), without(BASIS, "five_questions")),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/special-category-without-gdpr-special",
        known_by_vt,
        police_asks_vt(("justitiele-gegevens",), BASIS),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "legal-basis-missing/art6-the-category-does-not-admit",
        known_by_vt,
        police_asks_vt(("contact",), with_(BASIS, gdpr_art6="a")),
        forbidden(LBM, "categories.contact.gdpr_art6"),
    ),
    WatRow(
        "legal-basis-missing/secrecy-the-category-does-not-admit",
        known_by_vt,
        police_asks_vt(
            ("justitiele-gegevens",),
            with_(CONSENT_BASIS, gdpr_art6="c", gdpr_special="art10"),
        ),
        forbidden(LBM, "categories.justitiele-gegevens.secrecy"),
    ),
    WatRow(
        "legal-basis-missing/exception-the-category-does-not-admit",
        known_by_vt,
        police_asks_vt(("justitiele-gegevens",), with_(BASIS, gdpr_special="h")),
        forbidden(LBM, "categories.justitiele-gegevens.gdpr_special"),
    ),
    WatRow(
        "legal-basis-missing/zsm-advies-waives-only-the-dat",
        zsm_case,
        police_asks_vt(("contact",), without(BASIS, "gdpr_art6")),
        forbidden(LBM, COMPLETE),
    ),
    # category-not-allowed
    WatRow(
        "category-not-allowed/not-for-the-requesters-domain",
        known_by_police,
        wat("vt-test", "politie-test", ("justitiele-gegevens",), CRIMINAL_BASIS),
        forbidden(CNA, "themes.huiselijk-geweld.requesters.zorg"),
    ),
    WatRow(
        "category-not-allowed/one-of-two-not-for-the-domain",
        known_by_vt,
        police_asks_vt(
            ("contact", "zorg-gezondheid"),
            with_(BASIS, secrecy_permission="conflict-of-duties", gdpr_special="g"),
        ),
        forbidden(CNA, "themes.huiselijk-geweld.requesters.straf"),
    ),
    WatRow(
        "category-not-allowed/unknown-category",
        known_by_vt,
        police_asks_vt(("onbekende-categorie",), BASIS),
        forbidden(CNA, "categories"),
    ),
    WatRow(
        "category-not-allowed/domain-may-ask-nothing-in-the-theme",
        radicalisation_with_declared_woon,
        wat("woon-test", "politie-test", ("contact",), BASIS),
        forbidden(CNA, "themes.radicalisering.requesters"),
    ),
    WatRow(
        "category-not-allowed/zsm-advies-limits-bestuur",
        zsm_case,
        wat("zvh-test", "vt-test", ("veiligheidsrisico",), BASIS),
        forbidden(CNA, "themes.zsm-advies.requesters.bestuur"),
    ),
    # precedence
    WatRow(
        "precedence/missing-basis-before-disallowed-category",
        known_by_police,
        wat(
            "vt-test",
            "politie-test",
            ("justitiele-gegevens",),
            without(CRIMINAL_BASIS, "national_law"),
        ),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "precedence/basis-not-admitted-before-disallowed-category",
        known_by_police,
        wat(
            "vt-test",
            "politie-test",
            ("justitiele-gegevens",),
            with_(CRIMINAL_BASIS, gdpr_art6="f"),
        ),
        forbidden(LBM, "categories.justitiele-gegevens.gdpr_art6"),
    ),
    WatRow(
        "precedence/missing-basis-before-unknown-category",
        known_by_vt,
        police_asks_vt(("onbekende-categorie",), without(BASIS, "secrecy_permission")),
        forbidden(LBM, COMPLETE),
    ),
    WatRow(
        "precedence/dat-required-before-legal-basis-missing",
        case_only,
        police_asks_vt(("onbekende-categorie",), {}),
        forbidden(DAT, "themes.huiselijk-geweld.dat_required"),
    ),
    WatRow(
        "precedence/holder-not-a-participant-before-dat-required",
        case_only,
        wat("politie-test", "ggz-test", ("contact",), {}),
        forbidden(NAP),
    ),
    WatRow(
        "precedence/wat-sender-not-a-participant-before-case-closed",
        known_by_vt_then_closed,
        wat("ggz-test", "vt-test", ("contact",), BASIS),
        forbidden(NAP),
    ),
    # 400, 404 and 409
    WatRow(
        "invalid-request/wat-to-yourself",
        known_by_police,
        wat("politie-test", "politie-test", ("contact",), BASIS),
        invalid("holder"),
    ),
    WatRow(
        "invalid-request/wat-category-repeated",
        known_by_vt,
        police_asks_vt(("contact", "contact"), BASIS),
        invalid("categories"),
    ),
    WatRow(
        "invalid-request/wat-art6-outside-the-enumeration",
        known_by_vt,
        police_asks_vt(("contact",), with_(BASIS, gdpr_art6="z")),
        invalid("legal_basis", "gdpr_art6"),
    ),
    WatRow(
        "not-found/wat-unknown-case",
        case_only,
        WatSpec("politie-test", "vt-test", ("contact",), BASIS, case_ref="C-404"),
        Outcome(404, "not-found"),
    ),
    WatRow(
        "case-closed/wat",
        known_by_vt_then_closed,
        police_asks_vt(("contact",), BASIS),
        conflict("case-closed"),
    ),
)


# -- the other rows ------------------------------------------------------------------------------


async def registered_twice(w: World) -> Reply:
    await w.open_case()
    return await w.register()


async def registered_twice_by_a_revoked_zvh(w: World) -> Reply:
    await w.open_case()
    w.revoke_accession("zvh-test")
    return await w.register()


async def dat_exchange_id_reused(w: World) -> Reply:
    await w.open_case()
    xid = str(uuid.uuid4())
    await w.expect(
        await w.dat("zvh-test", ["politie-test"], exchange_id=xid), allow(202, "dat-request")
    )
    return await w.dat("zvh-test", ["politie-test"], exchange_id=xid)


async def wat_exchange_id_reused(w: World) -> Reply:
    await zsm_case(w)
    spec = police_asks_vt(("contact",), BASIS)
    xid = str(uuid.uuid4())
    await w.expect(await w.wat(spec, exchange_id=xid), allow(202, "wat-request"))
    return await w.wat(police_asks_vt(("betrokkenheid",), BASIS), exchange_id=xid)


async def wat_answered_twice_differently(w: World) -> Reply:
    request = await delivered_wat(w)
    await w.expect(
        await w.answer("vt-test", request, "refuse", reason_code="not-necessary"),
        allow(202, "wat-answer"),
    )
    return await w.answer("vt-test", request, "release", {"contact": "team Zuid"})


async def dat_in_closed_case(w: World) -> Reply:
    await w.open_case()
    await w.close_case()
    return await w.dat("zvh-test", ["politie-test"])


async def delivered_wat(w: World) -> Received:
    await zsm_case(w)
    body = assert_ok(await w.wat(police_asks_vt(("contact",), BASIS)), 202)
    return await w.received("vt-test", body["exchange_id"])


def wat_answer(decision: str, *, content: bool, reason: str | None) -> Step:
    async def act(w: World) -> Reply:
        request = await delivered_wat(w)
        released = {"contact": "casemanager, 010-0000000"} if content else None
        return await w.answer("vt-test", request, decision, released, reason_code=reason)

    return act


async def answer_reaches_requester(w: World, body: dict[str, Any]) -> None:
    [message] = [m for m in await w.client("politie-test").fetch() if m.kind == "wat-answer"]
    assert message.exchange_id == body["exchange_id"]
    assert message.decision in ("release", "partial", "refuse")


async def dat_delivered_check(w: World, body: dict[str, Any]) -> None:
    assert body["delivered"] == ["politie-test", "vt-test"]
    assert body["denied"] == []
    for org in body["delivered"]:
        await w.received(org, body["exchange_id"])


async def dat_answered_known(w: World) -> Reply:
    await w.open_case()
    asked = assert_ok(await w.dat("zvh-test", ["politie-test"]), 202)
    request = await w.received("politie-test", asked["exchange_id"])
    return await w.answer("politie-test", request, "known", {"contact": "wijkagent"})


async def partly_denied_dat(w: World) -> Reply:
    await w.open_case(participants=WITH_GGZ)
    return await w.dat("zvh-test", ["ggz-test", "politie-test"])


async def partly_denied_check(w: World, body: dict[str, Any]) -> None:
    assert body["delivered"] == ["politie-test"]
    assert body["denied"] == [{"org": "ggz-test", "code": "not-a-member"}]
    assert len(body["ledger"]) == 2


async def sender_revoked(w: World) -> Reply:
    await w.open_case()
    w.revoke_accession("politie-test")
    return await w.dat("politie-test", ["vt-test"])


async def recipient_revoked(w: World) -> Reply:
    await w.open_case()
    w.revoke_accession("vt-test")
    return await w.dat("politie-test", ["vt-test"])


async def new_protocol_version(w: World) -> Reply:
    await w.open_case()
    w.publish_protocol()
    return await w.dat("politie-test", ["vt-test"])


async def new_protocol_recipient(w: World) -> Reply:
    await w.open_case()
    v2 = w.publish_protocol()
    await w.expect(await w.accede("politie-test", v2), allow(201, "accession"))
    return await w.dat("politie-test", ["vt-test"])


async def new_protocol_then_acceded(w: World) -> Reply:
    await w.open_case()
    v2 = w.publish_protocol()
    await w.expect(await w.dat("politie-test", ["vt-test"]), forbidden(NAM))
    for org in ("politie-test", "vt-test"):
        await w.expect(await w.accede(org, v2), allow(201, "accession"))
    return await w.dat("politie-test", ["vt-test"])


async def old_protocol_acceded_again(w: World) -> Reply:
    await w.open_case()
    w.publish_protocol()
    await w.expect(await w.accede("politie-test", PROTOCOL_V1), allow(201, "accession"))
    return await w.dat("politie-test", ["vt-test"])


async def acceded_then_member(w: World) -> Reply:
    await w.open_case(participants=WITH_GGZ)
    await w.expect(await w.dat("ggz-test", ["vt-test"]), forbidden(NAM))
    await w.expect(await w.accede("ggz-test"), allow(201, "accession"))
    return await w.dat("ggz-test", ["vt-test"])


async def declared(w: World) -> Reply:
    await w.open_case(participants=WITH_WOON)
    return await w.declare("woon-test")


async def declared_then_receives_and_answers(w: World) -> Reply:
    await w.open_case(participants=WITH_WOON)
    await w.expect(await w.declare("woon-test"), allow(201, "declaration"))
    asked = await w.expect(
        await w.dat("zvh-test", ["woon-test", "politie-test"]), allow(202, "dat-request")
    )
    assert asked["delivered"] == ["politie-test", "woon-test"]
    assert asked["denied"] == []
    request = await w.received("woon-test", asked["exchange_id"])
    assert request.body is not None
    return await w.answer("woon-test", request, "known", {"contact": "huismeester"})


async def declared_for_another_case(w: World) -> Reply:
    await w.open_case("C-A", participants=WITH_WOON)
    await w.open_case("C-B", participants=WITH_WOON)
    await w.expect(await w.declare("woon-test", "C-A"), allow(201, "declaration"))
    return await w.dat("zvh-test", ["woon-test"], case_ref="C-B")


def declaration_window(start_days: float, length_days: float) -> Step:
    """Declare with validity [now + start, now + start + length), then be sent a dat."""

    async def act(w: World) -> Reply:
        await w.open_case(participants=WITH_WOON)
        start = SystemClock().now_ms() + int(start_days * DAY_MS)
        reply = await w.declare(
            "woon-test", valid_from_ms=start, valid_until_ms=start + int(length_days * DAY_MS)
        )
        await w.expect(reply, allow(201, "declaration"))
        return await w.dat("zvh-test", ["woon-test"])

    return act


def declaration_of(days: float) -> Step:
    async def act(w: World) -> Reply:
        await w.open_case(participants=WITH_WOON)
        start = SystemClock().now_ms() - 60_000
        return await w.declare(
            "woon-test", valid_from_ms=start, valid_until_ms=start + int(days * DAY_MS)
        )

    return act


async def declaration_with_wrong_hash(w: World) -> Reply:
    await w.open_case(participants=WITH_WOON)
    return await w.declare("woon-test", text_sha256="00" * 32)


async def declaration_for_another_hub(w: World) -> Reply:
    await w.open_case(participants=WITH_WOON)
    return await w.declare("woon-test", hub="hub-elders")


async def declaration_by_an_outsider(w: World) -> Reply:
    await w.open_case()
    return await w.declare("woon-test", text_sha256="00" * 32)


async def declaration_by_a_partner(w: World) -> Reply:
    await w.open_case()
    return await w.declare("politie-test", text_sha256="00" * 32)


# -- small acts ----------------------------------------------------------------------------------


async def _sends(w: World, sender: str, recipients: list[str]) -> Reply:
    await w.open_case()
    return await w.dat(sender, recipients)


async def _ggz_sends(w: World) -> Reply:
    await w.open_case(participants=WITH_GGZ)
    return await w.dat("ggz-test", ["vt-test"])


async def _only_ggz(w: World) -> Reply:
    await w.open_case(participants=WITH_GGZ)
    return await w.dat("zvh-test", ["ggz-test"])


async def _woon_sends(w: World, participants: tuple[str, ...]) -> Reply:
    await w.open_case(participants=participants)
    return await w.dat("woon-test", ["politie-test"])


async def _to_woon(w: World) -> Reply:
    await w.open_case(participants=WITH_WOON)
    return await w.dat("zvh-test", ["woon-test"])


async def _three_denied(w: World, recipients: list[str]) -> Reply:
    """ggz-test has no accession; woon-test no declaration; vt-test is not in the case."""
    await w.open_case(participants=("politie-test", "ggz-test", "woon-test"))
    return await w.dat("zvh-test", recipients)


async def _closed_then(w: World, sender: str) -> Reply:
    await w.open_case()
    await w.close_case()
    return await w.dat(sender, ["politie-test"])


ROWS: tuple[Row, ...] = (
    # forbidden-role
    Row(
        "forbidden-role/partner-registers-a-case",
        lambda w: w.register(by="politie-test"),
        forbidden(FR),
    ),
    Row("forbidden-role/incidental-accedes", lambda w: w.accede("woon-test"), forbidden(FR)),
    Row("forbidden-role/partner-signs-a-declaration", declaration_by_a_partner, forbidden(FR)),
    # not-a-member
    Row(
        "not-a-member/sender-never-acceded",
        _ggz_sends,
        forbidden(NAM),
        members=WITHOUT_GGZ,
    ),
    Row(
        "accession/makes-a-member",
        acceded_then_member,
        allow(202, "dat-request"),
        members=WITHOUT_GGZ,
    ),
    Row(
        "not-a-member/recipient",
        _only_ggz,
        forbidden(NAM, denied=[("ggz-test", NAM)]),
        members=WITHOUT_GGZ,
    ),
    Row(
        "not-a-member/one-recipient-of-two",
        partly_denied_dat,
        allow(202, "dat-request"),
        members=WITHOUT_GGZ,
        after=partly_denied_check,
    ),
    Row("not-a-member/sender-accession-revoked", sender_revoked, forbidden(NAM)),
    Row(
        "not-a-member/recipient-accession-revoked",
        recipient_revoked,
        forbidden(NAM, denied=[("vt-test", NAM)]),
    ),
    Row("not-a-member/new-protocol-version-sender", new_protocol_version, forbidden(NAM)),
    Row(
        "not-a-member/new-protocol-version-recipient",
        new_protocol_recipient,
        forbidden(NAM, denied=[("vt-test", NAM)]),
    ),
    Row(
        "not-a-member/accession-to-a-superseded-protocol",
        old_protocol_acceded_again,
        forbidden(NAM),
    ),
    Row(
        "accession/new-protocol-version-acceded",
        new_protocol_then_acceded,
        allow(202, "dat-request"),
    ),
    Row(
        "precedence/not-a-member-before-case-exists",
        registered_twice_by_a_revoked_zvh,
        forbidden(NAM),
    ),
    # declaration-required
    Row(
        "declaration-required/sender",
        lambda w: _woon_sends(w, WITH_WOON),
        forbidden(DR),
    ),
    Row(
        "declaration-required/recipient",
        _to_woon,
        forbidden(DR, denied=[("woon-test", DR)]),
    ),
    Row(
        "declaration-required/declared-for-another-case",
        declared_for_another_case,
        forbidden(DR, denied=[("woon-test", DR)]),
    ),
    Row(
        "declaration-required/expired",
        declaration_window(-40, 39),
        forbidden(DR, denied=[("woon-test", DR)]),
    ),
    Row(
        "declaration-required/not-yet-valid",
        declaration_window(1, 30),
        forbidden(DR, denied=[("woon-test", DR)]),
    ),
    Row(
        "precedence/incidental-non-participant-without-declaration",
        lambda w: _woon_sends(w, ("politie-test", "vt-test")),
        forbidden(DR),
    ),
    # not-a-participant
    Row(
        "not-a-participant/sender",
        lambda w: _sends(w, "ggz-test", ["politie-test"]),
        forbidden(NAP),
    ),
    Row(
        "not-a-participant/recipient",
        lambda w: _sends(w, "zvh-test", ["ggz-test"]),
        forbidden(NAP, denied=[("ggz-test", NAP)]),
    ),
    # precedence among the recipients of a dat-request
    Row(
        "precedence/every-recipient-denied-not-a-member-first",
        lambda w: _three_denied(w, ["vt-test", "woon-test", "ggz-test"]),
        forbidden(NAM, denied=[("vt-test", NAP), ("woon-test", DR), ("ggz-test", NAM)]),
        members=WITHOUT_GGZ,
    ),
    Row(
        "precedence/every-recipient-denied-declaration-before-participant",
        lambda w: _three_denied(w, ["vt-test", "woon-test"]),
        forbidden(DR, denied=[("vt-test", NAP), ("woon-test", DR)]),
        members=WITHOUT_GGZ,
    ),
    Row(
        "precedence/sender-not-a-participant-before-case-closed",
        lambda w: _closed_then(w, "ggz-test"),
        forbidden(NAP),
    ),
    # 409
    Row("case-exists", registered_twice, conflict("case-exists")),
    Row("exchange-exists/dat", dat_exchange_id_reused, conflict("exchange-exists")),
    Row("exchange-exists/wat", wat_exchange_id_reused, conflict("exchange-exists")),
    Row(
        "exchange-exists/wat-answered-differently",
        wat_answered_twice_differently,
        conflict("exchange-exists"),
    ),
    Row("case-closed/dat", dat_in_closed_case, conflict("case-closed")),
    # allow
    Row("allow/case-registered", lambda w: w.register(), allow(201, "case-registered")),
    Row(
        "allow/dat-delivered",
        lambda w: _sends(w, "zvh-test", ["politie-test", "vt-test"]),
        allow(202, "dat-request"),
        after=dat_delivered_check,
    ),
    Row("allow/dat-answered-known", dat_answered_known, allow(202, "dat-answer")),
    Row(
        "allow/wat-answered-release",
        wat_answer("release", content=True, reason=None),
        allow(202, "wat-answer"),
        after=answer_reaches_requester,
    ),
    Row(
        "allow/wat-answered-partial",
        wat_answer("partial", content=True, reason="disproportionate"),
        allow(202, "wat-answer"),
        after=answer_reaches_requester,
    ),
    Row(
        "allow/wat-answered-refuse",
        wat_answer("refuse", content=False, reason="source-protection"),
        allow(202, "wat-answer"),
        after=answer_reaches_requester,
    ),
    Row(
        "wat-answer/refuse-needs-a-reason-code",
        wat_answer("refuse", content=False, reason=None),
        invalid("reason_code"),
    ),
    Row(
        "wat-answer/reason-code-not-in-the-policy",
        wat_answer("refuse", content=False, reason="geen-zin"),
        invalid("reason_code"),
    ),
    # accessions
    Row(
        "allow/accession-accepted",
        lambda w: w.accede("ggz-test"),
        allow(201, "accession"),
        members=WITHOUT_GGZ,
    ),
    Row(
        "accession/signed-for-another-hub",
        lambda w: w.accede("ggz-test", hub="hub-elders"),
        invalid("hub"),
        members=WITHOUT_GGZ,
    ),
    Row(
        "accession/wrong-text-sha256",
        lambda w: w.accede("ggz-test", text_sha256="ab" * 32),
        invalid("text_sha256"),
        members=WITHOUT_GGZ,
    ),
    Row(
        "accession/bad-signature",
        lambda w: w.accede("ggz-test", signer=w.keys("outsider")),
        invalid("sig"),
        members=WITHOUT_GGZ,
    ),
    # declarations
    Row("allow/declaration-accepted", declared, allow(201, "declaration")),
    Row(
        "allow/declared-incidental-receives-a-dat-and-answers",
        declared_then_receives_and_answers,
        allow(202, "dat-answer"),
    ),
    Row("declaration/wrong-text-sha256", declaration_with_wrong_hash, invalid("text_sha256")),
    Row("declaration/signed-for-another-hub", declaration_for_another_hub, invalid("hub")),
    Row(
        "declaration/longer-than-366-days",
        declaration_of(366 + 1 / 86_400),
        invalid("valid_until_ms"),
    ),
    Row("declaration/ends-before-it-starts", declaration_of(-1), invalid("valid_until_ms")),
    Row(
        "not-a-participant/declaration-outside-the-case",
        declaration_by_an_outsider,
        forbidden(NAP),
    ),
    Row("declaration/exactly-366-days", declaration_of(366), allow(201, "declaration")),
    *(r.row() for r in WAT_ROWS),
)


assert len({r.name for r in ROWS}) == len(ROWS), "row names must be unique"
