"""Logins, sessions, CSRF and lockout of the review pages (issue 6, security tests)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from gateway.services.review_auth import MAX_FAILURES
from tests.conftest import Network
from tests.review.conftest import OFFICER, PASSWORD, Browser, csrf_of
from tests.web.helpers import Wire, assert_problem, query_one

PAGES = (
    "/review/exchanges",
    "/review/exchanges/x-1",
    "/review/members",
    "/review/refusals",
    "/review/ledger",
    "/review/subject",
)
APIS = (
    "/api/v1/review/exchanges",
    "/api/v1/review/exchanges/x-1",
    "/api/v1/review/members",
    "/api/v1/review/refusals",
    "/api/v1/review/ledger",
    "/api/v1/review/session",
)


async def ledger_bodies(net: Network, entry_type: str) -> list[dict[str, Any]]:
    row = await query_one(
        net.settings.node.database,
        "SELECT json_group_array(CAST(body AS TEXT)) FROM ledger WHERE type = ?",
        entry_type,
    )
    assert row is not None
    return [json.loads(b) for b in json.loads(row[0])]


async def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(browser: Browser) -> None:
    reply = await browser.login()
    assert reply.status == 303
    assert reply.headers["Location"] == "/review/exchanges"
    cookie = next(c for c in reply.set_cookies if c.startswith("zvh_review="))
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # the test hub is plain http
    page = await browser.get("/review/exchanges")
    assert page.status == 200
    assert "Uitwisselingen" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert (await browser.get("/api/v1/review/members")).status == 200
    out = await browser.post("/review/logout", {"csrf": csrf_of(page.text)})
    assert out.status == 303
    assert out.headers["Location"] == "/review/login"
    assert (await browser.get("/api/v1/review/members")).status == 401
    assert (await browser.get("/review/members")).status == 302


async def test_the_session_does_not_survive_being_dropped_by_the_hub(
    officer: Network, browser: Browser
) -> None:
    await browser.login()
    sessions = officer.hub.review_auth.sessions
    # Idle expiry: a session not seen for longer than the idle time is gone.
    for session in list(sessions._by_id.values()):
        session.last_seen_ms -= 16 * 60_000
    assert (await browser.get("/api/v1/review/members")).status == 401


async def test_wrong_password_gets_no_session(browser: Browser) -> None:
    reply = await browser.login(password="Niet-het-goede-wachtwoord")
    assert reply.status == 401
    assert "Inloggen mislukt" in reply.text
    assert not any(c.startswith("zvh_review=") for c in reply.set_cookies)
    assert (await browser.get("/api/v1/review/exchanges")).status == 401


async def test_unknown_user_gets_the_same_answer(browser: Browser) -> None:
    reply = await browser.login(name="niemand", password=PASSWORD)
    assert reply.status == 401
    assert "Inloggen mislukt" in reply.text


async def test_lockout_after_five_failures(officer: Network, browser: Browser) -> None:
    for _ in range(MAX_FAILURES):
        assert (await browser.login(password="Fout-wachtwoord-123")).status == 401
    # Locked now: even the right password does not get in.
    reply = await browser.login()
    assert reply.status == 401
    assert (await browser.get("/api/v1/review/exchanges")).status == 401
    outcomes = [b["outcome"] for b in await ledger_bodies(officer, "review-login")]
    assert outcomes == ["failure"] * MAX_FAILURES + ["locked"]


async def test_logins_are_ledger_entries_without_the_password(
    officer: Network, browser: Browser
) -> None:
    await browser.login(password="Fout-wachtwoord-123")
    await browser.login()
    await browser.login(name="onbekend-persoon", password=PASSWORD)
    bodies = await ledger_bodies(officer, "review-login")
    assert [(b["user"], b["outcome"]) for b in bodies] == [
        (OFFICER, "failure"),
        (OFFICER, "success"),
        (None, "failure"),  # an unknown name may be a mistyped password: not recorded
    ]
    everything = await query_one(
        officer.settings.node.database,
        "SELECT group_concat(CAST(body AS TEXT), '') FROM ledger",
    )
    assert everything is not None
    assert PASSWORD not in everything[0]
    assert "Fout-wachtwoord-123" not in everything[0]
    assert "onbekend-persoon" not in everything[0]


async def test_reports_are_ledger_entries(officer: Network, browser: Browser) -> None:
    await browser.login()
    await browser.get("/api/v1/review/members")
    await browser.get("/review/exchanges?case=C-9")
    bodies = await ledger_bodies(officer, "review-report")
    assert [(b["user"], b["report"]) for b in bodies] == [
        (OFFICER, "members"),
        (OFFICER, "exchanges"),
    ]
    assert bodies[1]["params"]["case"] == "C-9"


@pytest.mark.parametrize("path", PAGES)
async def test_no_page_without_a_session(browser: Browser, path: str) -> None:
    reply = await browser.get(path)
    assert reply.status == 302
    assert reply.headers["Location"] == "/review/login"


@pytest.mark.parametrize("path", APIS)
async def test_no_api_answer_without_a_session(officer: Network, path: str) -> None:
    wire = Wire(officer.url, officer.settings.authority)
    try:
        assert_problem(await wire.send("GET", path), 401, "unauthenticated")
        # A made-up session id is no session either.
        reply = await wire.send("GET", path, headers={"Cookie": "zvh_review=made-up"})
        assert_problem(reply, 401, "unauthenticated")
    finally:
        await wire.close()


async def test_login_without_csrf_token_is_403(browser: Browser) -> None:
    await browser.get("/review/login")
    reply = await browser.post("/review/login", {"name": OFFICER, "password": PASSWORD})
    assert reply.status == 403
    assert json.loads(reply.text)["code"] == "csrf-rejected"
    wrong = await browser.post(
        "/review/login", {"csrf": "not-the-token", "name": OFFICER, "password": PASSWORD}
    )
    assert wrong.status == 403


async def test_logout_without_csrf_token_is_403(browser: Browser) -> None:
    await browser.login()
    reply = await browser.post("/review/logout", {})
    assert reply.status == 403
    assert json.loads(reply.text)["code"] == "csrf-rejected"
    # Still logged in: the forged logout did nothing.
    assert (await browser.get("/api/v1/review/members")).status == 200


@pytest.mark.parametrize("path", APIS)
async def test_a_partner_signed_request_is_forbidden_role(officer: Network, path: str) -> None:
    wire = Wire(officer.url, officer.settings.authority)
    try:
        reply = await wire.signed(officer.keys["politie-test"], "GET", path)
        assert_problem(reply, 403, "forbidden-role")
    finally:
        await wire.close()


async def test_a_signature_does_not_help_a_session_either(
    browser: Browser, officer: Network
) -> None:
    await browser.login()
    wire = Wire(officer.url, officer.settings.authority)
    try:
        headers = wire.sign(officer.keys["zvh-test"], "GET", "/api/v1/review/members")
        reply = await browser.get("/api/v1/review/members", headers=headers)
        assert reply.status == 403
    finally:
        await wire.close()


async def test_no_password_or_personal_data_in_logs(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await browser.login(password="Fout-wachtwoord-123")
    await browser.login(name="onbekend-persoon", password="Ander-Geheim-987")
    await browser.login()
    await browser.get("/review/exchanges?case=C-GEHEIM&org=politie-test")
    await browser.get("/api/v1/review/exchanges/xid-geheim")
    assert caplog.records
    text = "\n".join(repr(r.__dict__) for r in caplog.records)
    for secret in (PASSWORD, "Fout-wachtwoord-123", "Ander-Geheim-987", "onbekend-persoon"):
        assert secret not in text
    for personal in ("C-GEHEIM", "xid-geheim"):
        assert personal not in text
