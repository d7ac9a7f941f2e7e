"""Case messages and referrals (issue #8) in the privacy officer's review: the type
filter offers them, the list and detail pages name sender and recipients (a referral
has no case and must not trip the pages), and the subject-access report lists a
message about the subject, not one without a subject, and no referral (the hub does
not know whom a referral is about: the person is only inside the sealed form)."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from gateway.storage.database import migrate
from tests.conftest import Network, synthetic_pid
from tests.review.conftest import Browser
from tests.review.test_subject import api_token, post_json
from tests.web.helpers import CASE, SUBJECT, open_case

REFERRAL = {
    "person": {"name": "Barend Testmans", "bsn": "230857103", "birth_date": "1980-02-03"},
    "reason": "Zorgen over escalatie thuis",
}


async def api(browser: Browser, path: str) -> Any:
    reply = await browser.get(path)
    assert reply.status == 200, reply.text
    return json.loads(reply.text)


async def seed(net: Network, tmp_path: Path) -> dict[str, str]:
    """A message about the subject with an attachment, one without a subject, and a
    referral; their exchange ids by name."""
    await open_case(net)
    politie = net.client("politie-test")
    (tmp_path / "verslag.pdf").write_bytes(os.urandom(3000))
    attached = await politie.attach(tmp_path / "verslag.pdf")
    about = await politie.send_message(
        CASE, ["vt-test"], {"text": "zie bijlage"}, subject_ref=SUBJECT, attachments=[attached]
    )
    general = await politie.send_message(CASE, ["vt-test"], {"text": "overleg dinsdag"})
    referral = await net.client("vt-test").send_referral(REFERRAL)
    await net.hub.ledger.sign(force=True)
    return {
        "about": about["exchange_id"],
        "general": general["exchange_id"],
        "referral": referral["exchange_id"],
    }


async def test_messages_and_referrals_in_the_lists_and_filters(
    officer: Network, browser: Browser, tmp_path: Path
) -> None:
    ids = await seed(officer, tmp_path)
    await browser.login()
    listed = await api(browser, "/api/v1/review/exchanges?type=message")
    assert {i["exchange_id"] for i in listed["items"]} == {ids["about"], ids["general"]}
    for item in listed["items"]:
        assert (item["type"], item["org"], item["counterpart"]) == (
            "message",
            "politie-test",
            "vt-test",
        )
        assert item["case_ref"] == CASE
    (ref,) = (await api(browser, "/api/v1/review/exchanges?type=referral"))["items"]
    assert (ref["exchange_id"], ref["org"], ref["counterpart"]) == (
        ids["referral"],
        "vt-test",
        "zvh-test",
    )
    assert ref["case_ref"] is None
    # The default list (no type) includes both kinds; the org filter finds the recipient.
    everything = await api(browser, "/api/v1/review/exchanges")
    assert {"message", "referral"} <= {i["type"] for i in everything["items"]}
    by_zvh = await api(browser, "/api/v1/review/exchanges?org=zvh-test&type=referral")
    assert [i["exchange_id"] for i in by_zvh["items"]] == [ids["referral"]]
    by_case = await api(browser, f"/api/v1/review/exchanges?case={CASE}&type=referral")
    assert by_case["items"] == []

    page = await browser.get("/review/exchanges?type=referral")
    assert page.status == 200
    assert '<option value="message">' in page.text
    assert '<option value="referral" selected>' in page.text
    assert ids["referral"] in page.text
    assert "Testmans" not in page.text


async def test_detail_pages_of_a_message_and_a_referral(
    officer: Network, browser: Browser, tmp_path: Path
) -> None:
    ids = await seed(officer, tmp_path)
    await browser.login()
    data = await api(browser, f"/api/v1/review/exchanges/{ids['referral']}")
    assert data["verified"] is True
    [step] = data["steps"]
    assert (step["type"], step["org"], step["counterpart"]) == ("referral", "vt-test", "zvh-test")
    assert step["body"]["recipient"] == "zvh-test"
    assert data["legal_basis"] is None
    assert {a["org"] for a in data["relied_on"]["accessions"]} == {"vt-test", "zvh-test"}
    assert data["relied_on"]["declarations"] == []
    page = await browser.get(f"/review/exchanges/{ids['referral']}")
    assert page.status == 200, page.text
    assert "Aanmelding (zonder casus) van vt-test aan zvh-test, met 0 bijlagen." in page.text
    assert "Testmans" not in page.text

    data = await api(browser, f"/api/v1/review/exchanges/{ids['about']}")
    [step] = data["steps"]
    assert step["body"]["subject_ref"] == SUBJECT
    assert len(step["body"]["blobs"]) == 1
    assert {a["org"] for a in data["relied_on"]["accessions"]} == {"politie-test", "vt-test"}
    page = await browser.get(f"/review/exchanges/{ids['about']}")
    assert page.status == 200
    assert (
        f"Casusbericht van politie-test aan vt-test, over persoon {SUBJECT} in de casus,"
        " met 1 bijlage." in page.text
    )


async def test_the_subject_report_lists_the_message_about_the_subject(
    officer: Network, browser: Browser, tmp_path: Path
) -> None:
    ids = await seed(officer, tmp_path)
    await browser.login()
    token = await api_token(browser)
    status, text = await post_json(browser, {"pid": synthetic_pid()}, token)
    assert status == 200, text
    messages = [e for e in json.loads(text)["entries"] if e["type"] in ("message", "referral")]
    [row] = messages  # not the message without a subject, not the referral
    assert (row["from"], row["to"], row["case_ref"]) == ("politie-test", ["vt-test"], CASE)
    leaf = await api(browser, f"/api/v1/review/exchanges/{ids['about']}")
    assert row["idx"] == leaf["steps"][0]["idx"]
    status, text = await post_json(browser, {"pid": synthetic_pid(), "format": "csv"}, token)
    assert status == 200
    assert "message" in text


async def test_migration_fills_in_the_parties_of_entries_indexed_before(
    officer: Network, browser: Browser, tmp_path: Path
) -> None:
    await seed(officer, tmp_path)
    await browser.login()
    await api(browser, "/api/v1/review/exchanges")  # indexes everything
    database = officer.settings.node.database
    with closing(sqlite3.connect(database, isolation_level=None)) as conn:
        # As the index left them before it read `sender` and `recipient(s)`.
        conn.execute(
            "UPDATE review_entries SET org = NULL, counterpart = NULL"
            " WHERE type IN ('message', 'referral')"
        )
        conn.execute("PRAGMA user_version = 10")
        assert migrate(conn) >= 11
        rows = conn.execute(
            "SELECT type, org, counterpart FROM review_entries"
            " WHERE type IN ('message', 'referral') ORDER BY idx"
        ).fetchall()
    assert rows == [
        ("message", "politie-test", "vt-test"),
        ("message", "politie-test", "vt-test"),
        ("referral", "vt-test", "zvh-test"),
    ]
