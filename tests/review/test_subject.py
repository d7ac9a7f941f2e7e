"""The subject-access report (inzage) by pid lists exactly the exchanges about that
subject; it needs the session's CSRF token, and it is a ledger entry."""

from __future__ import annotations

import csv
import io
import json
import uuid

from tests.conftest import Network, synthetic_pid
from tests.review.conftest import Browser, csrf_of
from tests.web.helpers import THEME, open_case, read_leaf

OTHER_PID = synthetic_pid("111222333")  # another synthetic person (11-test valid)


async def seed(net: Network) -> set[str]:
    """Two dat-requests about the synthetic person, one about someone else; returns the
    exchange ids about the synthetic person (computed here, not by the hub)."""
    await open_case(net, "C-1", subjects=("S1", "S2"))
    zvh = net.client("zvh-test")
    await zvh.register_case("C-2", THEME, [("T1", OTHER_PID)], ["politie-test", "vt-test"])
    politie = net.client("politie-test")
    mine = set()
    for case_ref, subject_ref in (("C-1", "S1"), ("C-1", "S2"), ("C-2", "T1")):
        xid = str(uuid.uuid4())
        await politie.dat_request(case_ref, subject_ref, ["vt-test"], {"q": "?"}, exchange_id=xid)
        if case_ref == "C-1":
            mine.add(xid)
    return mine


async def api_token(browser: Browser) -> str:
    reply = await browser.get("/api/v1/review/session")
    assert reply.status == 200
    token = json.loads(reply.text)["csrf"]
    assert isinstance(token, str)
    return token


async def post_json(browser: Browser, body: dict[str, str], token: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-CSRF-Token"] = token
    async with browser.session.post(
        browser.base_url + "/api/v1/review/subject-report",
        data=json.dumps(body),
        headers=headers,
        allow_redirects=False,
    ) as r:
        return r.status, await r.text()


async def test_subject_report_lists_exactly_the_subjects_exchanges(
    officer: Network, browser: Browser
) -> None:
    mine = await seed(officer)
    await browser.login()
    token = await api_token(browser)
    status, text = await post_json(browser, {"pid": synthetic_pid()}, token)
    assert status == 200, text
    entries = json.loads(text)["entries"]
    requests = [e for e in entries if e["type"] == "dat-request"]
    assert len(requests) == 2
    assert {e["case_ref"] for e in entries} == {"C-1"}
    assert all(e["to"] == ["vt-test"] and e["from"] == "politie-test" for e in requests)
    # The hub's answer, checked against the ledger directly by exchange id.
    got = await exchange_ids_of(officer, [e["idx"] for e in entries])
    assert got == mine
    status, text = await post_json(browser, {"pid": OTHER_PID, "format": "csv"}, token)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["case_ref"] for r in rows if r["type"] == "dat-request"] == ["C-2"]


async def exchange_ids_of(net: Network, indexes: list[int]) -> set[str]:
    ids = set()
    for index in indexes:
        leaf = await read_leaf(net.settings.node.database, index)
        assert leaf.body is not None
        ids.add(leaf.body["exchange_id"])
    return ids


async def test_subject_report_needs_the_csrf_token(officer: Network, browser: Browser) -> None:
    await browser.login()
    status, text = await post_json(browser, {"pid": OTHER_PID}, None)
    assert status == 403
    assert json.loads(text)["code"] == "csrf-rejected"
    status, _ = await post_json(browser, {"pid": OTHER_PID}, "wrong")
    assert status == 403


async def test_subject_report_rejects_a_bad_pid(officer: Network, browser: Browser) -> None:
    await browser.login()
    status, _ = await post_json(browser, {"pid": "230857103"}, await api_token(browser))
    assert status == 400


async def test_subject_page_and_csv_download(officer: Network, browser: Browser) -> None:
    await seed(officer)
    await browser.login()
    form = await browser.get("/review/subject")
    assert form.status == 200
    token = csrf_of(form.text)
    page = await browser.post(
        "/review/subject", {"csrf": token, "pid": synthetic_pid(), "format": "html"}
    )
    assert page.status == 200
    assert page.text.count("<td>dat-request</td>") == 2
    download = await browser.post(
        "/review/subject", {"csrf": token, "pid": synthetic_pid(), "format": "csv"}
    )
    assert download.status == 200
    assert download.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in download.headers["Content-Disposition"]
    forged = await browser.post("/review/subject", {"pid": synthetic_pid(), "format": "csv"})
    assert forged.status == 403
