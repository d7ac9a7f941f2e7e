"""The server-rendered review pages over the seeded ledger (Dutch labels, escaping)."""

from __future__ import annotations

import json

from tests.review.conftest import Browser


async def test_exchanges_page_filters_and_links(browser: Browser, seeded: dict[str, int]) -> None:
    page = await browser.get("/review/exchanges?case=C-B")
    assert page.status == 200
    assert "Filteren" in page.text
    assert "legal-basis-missing" in page.text
    assert "category-not-allowed" in page.text
    assert 'href="/review/exchanges/x-3"' in page.text
    assert "x-1" not in page.text
    assert page.headers["X-Frame-Options"] == "DENY"


async def test_exchanges_page_pages_on(browser: Browser, seeded: dict[str, int]) -> None:
    page = await browser.get("/review/exchanges?case=C-A&limit=2")
    assert "Volgende pagina" in page.text
    assert f"before={seeded['wat']}" in page.text


async def test_refusals_page(browser: Browser, seeded: dict[str, int]) -> None:
    page = await browser.get("/review/refusals")
    assert page.status == 200
    assert "Weigeringen met een volledige rechtsgrond" in page.text
    assert "<td>2026-02</td>" in page.text


async def test_values_are_escaped(browser: Browser, seeded: dict[str, int]) -> None:
    page = await browser.get("/review/exchanges?case=%3Cscript%3E")
    assert page.status == 400  # not a valid case ref: never echoed into a page
    assert "<script>" not in page.text


async def test_ledger_status(browser: Browser, seeded: dict[str, int]) -> None:
    reply = await browser.get("/api/v1/review/ledger")
    assert reply.status == 200
    data = json.loads(reply.text)
    assert data["self_check"]["ok"] is True
    assert data["checkpoint"]["size"] >= 1
    assert data["purge"] == {"runs": 0, "last_ms": None, "last_entries": None}
    page = await browser.get("/review/ledger")
    assert page.status == 200
    assert "Controle geslaagd" in page.text
