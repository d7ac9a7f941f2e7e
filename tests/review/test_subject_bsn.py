"""The subject-access report by BSN and birth date (issue 6): the hub computes the
pid through a running national pseudonymiser and the report is exactly the one the
pid gives. The BSN and birth date are checked (11-test, calendar) with Dutch messages,
never logged, never echoed, never in the ledger; a hub without a pseudonymiser says
so and keeps the pid route."""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.services import review_auth
from gateway.services.national import pid_sha256
from gateway.web.state import Hub
from tests.conftest import BIRTH, BSN, Network, synthetic_pid
from tests.federation.conftest import NationalNet, run_national
from tests.federation.support import CASE_THEME
from tests.review.conftest import OFFICER, PASSWORD, Browser, csrf_of
from tests.review.test_subject import api_token, post_json

BIRTH_DASHED = f"{BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}"
OTHER_BSN, OTHER_BIRTH = "111222333", "19751130"


def all_ledger_text(hub: Hub) -> str:
    with closing(sqlite3.connect(f"file:{hub.settings.node.database}?mode=ro", uri=True)) as c:
        rows = c.execute("SELECT type, CAST(body AS TEXT) FROM ledger").fetchall()
    return "\n".join(f"{t} {b}" for t, b in rows)


def report_bodies(hub: Hub) -> list[dict[str, object]]:
    with closing(sqlite3.connect(f"file:{hub.settings.node.database}?mode=ro", uri=True)) as c:
        rows = c.execute(
            "SELECT body FROM ledger WHERE type = 'review-report' ORDER BY idx"
        ).fetchall()
    bodies = [json.loads(bytes(b)) for (b,) in rows]
    return [b for b in bodies if b.get("report") == "subject-access"]


async def seed(nat: NationalNet) -> tuple[str, set[str]]:
    """Region 0's ZVH computes two people's pids (as partners do, through the hub) and
    opens a case for each; returns the first person's pid and the exchange ids about
    that person (from what was sent, not from the hub's report)."""
    a = nat.regions[0]
    zvh = nat.client(a.zvh)
    pid, other = await zvh.pseudonyms([(BSN, BIRTH), (OTHER_BSN, OTHER_BIRTH)])
    await zvh.register_case("C-BSN-1", CASE_THEME, [("S1", pid)], [a.om, a.vt])
    await zvh.register_case("C-BSN-2", CASE_THEME, [("T1", other)], [a.om])
    mine = set()
    for case_ref, subject in (("C-BSN-1", "S1"), ("C-BSN-1", "S1"), ("C-BSN-2", "T1")):
        sent = await zvh.dat_request(case_ref, subject, [a.om], {"vraag": "bekend?"})
        if case_ref == "C-BSN-1":
            mine.add(sent["exchange_id"])
    return pid, mine


async def officer_at(nat: NationalNet) -> Browser:
    hub = nat.hub(0)
    review_auth.add_user(
        hub.settings, SystemClock(), name=OFFICER, role="privacy-officer", password=PASSWORD
    )
    browser = Browser(nat.urls[nat.regions[0].hub])
    assert (await browser.login()).status == 303
    return browser


async def test_bsn_route_gives_exactly_the_pid_routes_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with run_national(tmp_path) as nat:
        pid, mine = await seed(nat)
        browser = await officer_at(nat)
        try:
            token = await api_token(browser)
            by_bsn = {"bsn": BSN, "birth_date": BIRTH_DASHED}
            status, text = await post_json(browser, by_bsn, token)
            assert status == 200, text
            bsn_report = json.loads(text)["entries"]
            status, text = await post_json(browser, {"pid": pid}, token)
            assert status == 200, text
            assert json.loads(text)["entries"] == bsn_report
            assert {e["case_ref"] for e in bsn_report} == {"C-BSN-1"}
            assert len([e for e in bsn_report if e["type"] == "dat-request"]) == len(mine)
            # YYYYMMDD is the same person; the CSV is the pid route's CSV.
            status, csv_bsn = await post_json(
                browser, {"bsn": BSN, "birth_date": BIRTH, "format": "csv"}, token
            )
            assert status == 200
            _, csv_pid = await post_json(browser, {"pid": pid, "format": "csv"}, token)
            assert csv_bsn == csv_pid
            assert csv_bsn.count("\r\n") == len(bsn_report) + 1
            # The page: the BSN form, the computed pid, the same rows; the BSN not echoed.
            form = await browser.get("/review/subject")
            assert 'name="bsn"' in form.text
            page = await browser.post(
                "/review/subject",
                {"csrf": csrf_of(form.text), "bsn": BSN, "birth_date": BIRTH_DASHED},
            )
            assert page.status == 400  # no format: the form always sends one
            page = await browser.post(
                "/review/subject",
                {
                    "csrf": csrf_of(form.text),
                    "bsn": BSN,
                    "birth_date": BIRTH_DASHED,
                    "format": "html",
                },
            )
            assert page.status == 200
            assert pid in page.text
            assert page.text.count("<td>dat-request</td>") == len(mine)
            assert BSN not in page.text
            assert BIRTH_DASHED not in page.text
        finally:
            await browser.close()
        hub = nat.hub(0)
        reports = report_bodies(hub)
        assert [r["params"]["by"] for r in reports] == ["bsn", "pid", "bsn", "pid", "bsn"]  # type: ignore[index]
        assert all(r["params"]["pid_sha256"] == pid_sha256(pid) for r in reports)  # type: ignore[index]
        ledger = all_ledger_text(hub)
        assert "subject-access" in ledger
        for secret in (BSN, BIRTH, BIRTH_DASHED, pid):
            assert secret not in ledger
    for secret in (BSN, BIRTH, BIRTH_DASHED):
        assert secret not in caplog.text
    assert "review" in caplog.text  # the logs were captured, so the search can fail


async def test_bad_bsn_or_birth_date_is_refused_in_dutch_and_sends_nothing(
    tmp_path: Path,
) -> None:
    async with run_national(tmp_path) as nat:
        browser = await officer_at(nat)
        try:
            token = await api_token(browser)
            for body, field, dutch in (
                ({"bsn": "230857104", "birth_date": BIRTH}, "bsn", "elfproef"),
                ({"bsn": "23085710", "birth_date": BIRTH}, "bsn", "9 cijfers"),
                ({"bsn": BSN, "birth_date": "1980-02-31"}, "birth_date", "bestaat niet"),
                ({"bsn": BSN, "birth_date": "2999-01-01"}, "birth_date", "toekomst"),
                ({"bsn": BSN, "birth_date": "03-02-1980"}, "birth_date", "JJJJ-MM-DD"),
            ):
                status, text = await post_json(browser, body, token)
                assert status == 400, text
                problem = json.loads(text)
                assert problem["code"] == "invalid-request"
                assert problem["errors"][0]["loc"] == ["body", field]
                assert dutch in problem["errors"][0]["msg_nl"]
                assert body["bsn"] not in text
                assert body["birth_date"] not in text
            # Neither or both ways of naming the subject.
            for body in ({"bsn": BSN}, {"pid": synthetic_pid(), "bsn": BSN, "birth_date": BIRTH}):
                status, _ = await post_json(browser, body, token)
                assert status == 400
            form = await browser.get("/review/subject")
            page = await browser.post(
                "/review/subject",
                {"csrf": csrf_of(form.text), "bsn": "230857104", "birth_date": BIRTH_DASHED}
                | {"format": "html"},
            )
            assert page.status == 400
            assert "elfproef" in page.text
            assert "230857104" not in page.text
        finally:
            await browser.close()
        metrics = nat.hub(0).metrics.render().decode()
        assert f'zvh_gateway_oprf_evaluations_total{{org="{nat.regions[0].hub}"}}' not in metrics


async def test_a_hub_without_pseudonymiser_says_so_and_keeps_the_pid_route(
    officer: Network, browser: Browser
) -> None:
    await browser.login()
    form = await browser.get("/review/subject")
    assert "niet aangesloten op de landelijke pseudonimiseringsdienst" in form.text
    assert 'name="bsn"' not in form.text
    token = await api_token(browser)
    status, text = await post_json(browser, {"bsn": BSN, "birth_date": BIRTH}, token)
    assert status == 503, text
    assert json.loads(text)["code"] == "service-unavailable"
    page = await browser.post(
        "/review/subject",
        {"csrf": csrf_of(form.text), "bsn": BSN, "birth_date": BIRTH, "format": "html"},
    )
    assert page.status == 503
    assert "niet aangesloten" in page.text
    status, _ = await post_json(browser, {"pid": synthetic_pid()}, token)
    assert status == 200
