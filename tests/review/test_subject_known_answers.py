"""Acceptance 4 of issue 6: in a seeded data set with known answers, the subject
report lists exactly the exchange steps that involved the subject.

Three synthetic people are subjects in three cases (one person in two cases under
two subject refs, two people in one case); a seeded random mix of dat-requests to
one or more holders, their answers (some never answered) and wat-requests with
release or refusal is sent through the client library to a real hub. The test
keeps its own record of what it sent about whom, and compares it, for every person,
with the report (each row's ledger index read back from the ledger file itself).
A person in no case gets an empty report.

Denied attempts (a sender that may not ask) are recorded without a subject ref, and
are not part of a subject's report: nothing was shared. One is sent as noise.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from gateway.adapters.client import HubError
from tests.conftest import Network, synthetic_pid
from tests.review.conftest import Browser
from tests.review.test_subject import api_token, post_json
from tests.web.helpers import THEME, read_leaf

PEOPLE = {
    "P": synthetic_pid(),
    "Q": synthetic_pid("111222333", "19751130"),
    "R": synthetic_pid("999990019", "19700101"),
}
NOBODY = synthetic_pid("123456782", "20000101")
# case -> (participants other than the ZVH, {subject_ref: person})
CASES = {
    "KA-1": (("ggz-test", "politie-test", "vt-test"), {"S1": "P", "S2": "Q"}),
    "KA-2": (("politie-test", "vt-test"), {"T1": "P", "T2": "R"}),
    "KA-3": (("ggz-test", "politie-test"), {"U1": "Q"}),
}
BASIS = {
    "gdpr_art6": "e",
    "national_law": "Wet gegevensverwerking samenwerkingsverbanden art. 2.1",
    "secrecy_permission": "statutory-duty",
    "five_questions": {
        "purpose": "veiligheid",
        "necessity": "nodig voor afstemming",
        "subsidiarity": "geen lichter middel",
        "proportionality": "alleen contactgegevens",
        "effectiveness": "maakt afstemming mogelijk",
    },
}


async def seed(net: Network, rnd: random.Random) -> dict[str, Counter[tuple[str, str]]]:
    """Send everything; return, per person, the (entry type, exchange id) steps about
    that person, as counted here from what was sent and answered."""
    zvh = net.client("zvh-test")
    for case_ref, (participants, subjects) in CASES.items():
        pairs = [(ref, PEOPLE[who]) for ref, who in subjects.items()]
        await zvh.register_case(case_ref, THEME, pairs, list(participants))
    about: dict[str, Counter[tuple[str, str]]] = {who: Counter() for who in PEOPLE}
    holders = {org: net.client(org) for org in ("ggz-test", "politie-test", "vt-test")}
    known_to_police: list[tuple[str, str]] = []
    for _ in range(14):
        case_ref = rnd.choice(sorted(CASES))
        participants, subjects = CASES[case_ref]
        subject_ref = rnd.choice(sorted(subjects))
        who = subjects[subject_ref]
        to = sorted(rnd.sample(participants, rnd.randint(1, len(participants))))
        sent = await zvh.dat_request(case_ref, subject_ref, to, {"vraag": "bekend?"})
        xid = sent["exchange_id"]
        about[who][("dat-request", xid)] += 1
        for org in to:
            (message,) = await holders[org].fetch(wait=5)
            assert message.exchange_id == xid
            await holders[org].ack([message.message_id])
            if rnd.random() < 0.25:
                continue  # never answered
            decision = rnd.choice(["known", "not-known"])
            await holders[org].answer(message, decision)
            about[who][("dat-answer", xid)] += 1
            if org == "politie-test" and decision == "known":
                known_to_police.append((case_ref, subject_ref))
    police = holders["politie-test"]
    for case_ref, subject_ref in sorted(set(known_to_police))[:3]:
        wat = await zvh.wat_request(
            case_ref,
            subject_ref,
            "politie-test",
            categories=["contact"],
            purpose="afstemming hulpverlening",
            processing_activity="mda-plus-plus",
            legal_basis=BASIS,
            body={"vraag": "contactgegevens"},
        )
        who = CASES[case_ref][1][subject_ref]
        about[who][("wat-request", wat["exchange_id"])] += 1
        (message,) = await police.fetch(wait=5)
        await police.ack([message.message_id])
        if rnd.random() < 0.5:
            await police.answer(message, "release", {"contact": "via de wijkagent"})
        else:
            await police.answer(message, "refuse", reason_code="not-necessary")
        about[who][("wat-answer", wat["exchange_id"])] += 1
    # Noise: vt-test is no participant of KA-3, so this is denied (and names no subject).
    with pytest.raises(HubError) as denied:
        await net.client("vt-test").dat_request("KA-3", "U1", ["politie-test"], {"v": "?"})
    assert denied.value.status == 403
    assert sum(sum(c.values()) for c in about.values()) > 20, "the seed sent too little"
    assert all(about.values()), "every person should have steps in the seed"
    assert any(t == "wat-answer" for c in about.values() for t, _ in c), "no wat in the seed"
    return about


async def report_steps(net: Network, browser: Browser, pid: str) -> Counter[tuple[str, str]]:
    status, text = await post_json(browser, {"pid": pid}, await api_token(browser))
    assert status == 200, text
    steps: Counter[tuple[str, str]] = Counter()
    for row in json.loads(text)["entries"]:
        leaf = await read_leaf(net.settings.node.database, row["idx"])
        assert leaf.body is not None
        assert leaf.entry_type == row["type"]
        steps[(leaf.entry_type, leaf.body["exchange_id"])] += 1
    return steps


@pytest.mark.parametrize("seed_value", [6, 61])
async def test_subject_report_lists_exactly_the_subjects_steps(
    officer: Network, browser: Browser, seed_value: int
) -> None:
    about = await seed(officer, random.Random(seed_value))
    await browser.login()
    for who, pid in PEOPLE.items():
        assert await report_steps(officer, browser, pid) == about[who], who
    assert await report_steps(officer, browser, NOBODY) == Counter()
