"""Fixtures for the review pages: a hub with a privacy officer, and a browser-like
HTTP client that keeps cookies (loopback IPs included) and reads form tokens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from gateway.clock import SystemClock
from gateway.services import review_auth
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
