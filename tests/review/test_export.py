"""The compliance export ZIP: its files, its indicators, CSRF, and its ledger entry."""

from __future__ import annotations

import io
import json
import zipfile

from tests.conftest import Network
from tests.review.conftest import Browser, csrf_of
from tests.review.test_login import ledger_bodies

FILES = {
    "indicators.json",
    "members.json",
    "accessions.csv",
    "declarations.csv",
    "refusals.json",
    "refusal_counts.csv",
    "checkpoint.txt",
    "verification.json",
}


async def test_compliance_export_from_the_members_page(officer: Network, browser: Browser) -> None:
    await browser.login()
    page = await browser.get("/review/members")
    token = csrf_of(page.text)
    async with browser.session.post(
        browser.base_url + "/review/compliance-export", data={"csrf": token}
    ) as r:
        assert r.status == 200
        assert r.content_type == "application/zip"
        data = await r.read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert set(archive.namelist()) == FILES
        indicators = json.loads(archive.read("indicators.json"))
        verification = json.loads(archive.read("verification.json"))
        checkpoint = archive.read("checkpoint.txt").decode()
    assert indicators["signed_protocol_per_partner"] == {
        "ggz-test": True,
        "politie-test": True,
        "vt-test": True,
        "zvh-test": True,
    }
    assert indicators["declaration_per_incidental_partner"] == {"woon-test": False}
    assert verification["ok"] is True
    assert checkpoint.startswith(officer.hub.ledger.origin + "\n")  # the signed note
    reports = [b["report"] for b in await ledger_bodies(officer, "review-report")]
    assert "compliance-export" in reports


async def test_compliance_export_needs_csrf(officer: Network, browser: Browser) -> None:
    await browser.login()
    reply = await browser.post("/review/compliance-export", {})
    assert reply.status == 403
    async with browser.session.post(browser.base_url + "/api/v1/review/compliance-export") as r:
        assert r.status == 403
