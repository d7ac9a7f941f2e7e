"""Fixtures for the review pages: a hub with a privacy officer, and a browser-like
HTTP client that keeps cookies (loopback IPs included) and reads form tokens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.clock import SystemClock
from gateway.services import review_auth
from gateway.storage.offline import offline_transaction
from tests.conftest import Network

OFFICER = "fg-anna"
PASSWORD = "Zeer-geheim-wachtwoord-42"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True, slots=True)
class Page:
    status: int
    text: str
    headers: dict[str, str]
    set_cookies: list[str]


class Browser:
    """Follows no redirects by itself, so tests see every 302/303."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **kw: object) -> Page:
        async with self.session.get(self.base_url + path, allow_redirects=False, **kw) as r:  # type: ignore[arg-type]
            return await _page(r)

    async def post(self, path: str, data: dict[str, str]) -> Page:
        async with self.session.post(self.base_url + path, data=data, allow_redirects=False) as r:
            return await _page(r)

    async def login(self, name: str = OFFICER, password: str = PASSWORD) -> Page:
        form = await self.get("/review/login")
        return await self.post(
            "/review/login", {"csrf": csrf_of(form.text), "name": name, "password": password}
        )


async def _page(r: aiohttp.ClientResponse) -> Page:
    return Page(
        r.status,
        await r.text(),
        dict(r.headers),
        r.headers.getall("Set-Cookie", []),
    )


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, html
    return found.group(1)


@pytest.fixture
async def officer(network: Network) -> Network:
    review_auth.add_user(
        network.settings, SystemClock(), name=OFFICER, role="privacy-officer", password=PASSWORD
    )
    return network


@pytest.fixture
async def browser(officer: Network) -> AsyncIterator[Browser]:
    b = Browser(officer.url)
    try:
        yield b
    finally:
        await b.close()


JAN = 1_768_435_200_000  # 2026-01-15 00:00 UTC
FEB = 1_771_113_600_000  # 2026-02-15 00:00 UTC
COMPLETE = {
    "gdpr_art6": "e",
    "national_law": "Wet verplichte GGZ art. 8:30",
    "secrecy_permission": "conflict-of-duties",
    "five_questions": {
        "purpose": "veiligheid",
        "necessity": "ja",
        "subsidiarity": "geen lichter middel",
        "proportionality": "beperkt",
        "effectiveness": "helpt",
    },
}
# name: (type, time, body, actors)
SEED: dict[str, tuple[str, int, dict[str, Any], tuple[str, ...]]] = {
    "dat": (
        "dat-request",
        JAN,
        {"exchange_id": "x-1", "case_ref": "C-A", "requester": "politie-test"},
        ("politie-test", "vt-test"),
    ),
    "dat-answer": (
        "dat-answer",
        JAN + 1000,
        {
            "exchange_id": "x-1",
            "case_ref": "C-A",
            "from": "vt-test",
            "to": "politie-test",
            "decision": "known",
        },
        ("politie-test", "vt-test"),
    ),
    "wat": (
        "wat-request",
        FEB,
        {
            "exchange_id": "x-2",
            "case_ref": "C-A",
            "requester": "politie-test",
            "holder": "vt-test",
            "theme": "huiselijk-geweld",
            "legal_basis": COMPLETE,
        },
        ("politie-test", "vt-test"),
    ),
    "wat-refused": (
        "wat-answer",
        FEB + 1000,
        {
            "exchange_id": "x-2",
            "case_ref": "C-A",
            "from": "vt-test",
            "to": "politie-test",
            "decision": "refuse",
        },
        ("politie-test", "vt-test"),
    ),
    "denied-category": (
        "denied",
        FEB + 2000,
        {
            "action": "wat-request",
            "code": "category-not-allowed",
            "org": "ggz-test",
            "denied_org": "vt-test",
            "case_ref": "C-B",
            "exchange_id": "x-3",
            "legal_basis": COMPLETE,
        },
        ("ggz-test", "vt-test"),
    ),
    "denied-basis": (
        "denied",
        FEB + 3000,
        {
            "action": "wat-request",
            "code": "legal-basis-missing",
            "org": "ggz-test",
            "denied_org": "vt-test",
            "case_ref": "C-B",
            "exchange_id": "x-4",
            "legal_basis": {"gdpr_art6": "e"},
        },
        ("ggz-test", "vt-test"),
    ),
}


@pytest.fixture
async def seeded(officer: Network, browser: Browser) -> dict[str, int]:
    """The seed's ledger indexes by name (appended as an offline tool would)."""
    index: dict[str, int] = {}
    with offline_transaction(officer.settings.node.database) as tx:
        for name, (entry_type, time_ms, body, actors) in SEED.items():
            index[name] = tx.append_ledger(entry_type, time_ms, body, actors).index
    assert (await browser.login()).status == 303
    return index
