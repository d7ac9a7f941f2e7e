"""Fixtures for browser tests: Playwright's own driver (from the pip package) driving
Debian's chromium (`make chromium` installs it). Playwright never downloads a browser.

The tests here are plain sync functions using Playwright's sync API against servers
that run in other OS processes (see tests/e2e/hubproc.py). The sync API marks its
private event loop as this thread's running loop between calls, so it cannot share a
thread with pytest-asyncio: the fixtures are module-scoped and stop Playwright at the
end of each module, before any async test of another module runs, and check that no
loop was left behind.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
# Gitignored (build/): the screenshots are for people to look at, not test vectors.
SCREENSHOTS = REPO / "build" / "screenshots"
# Without the background-networking flags chromium tries to reach Google at start, and
# the closed network here answers with refused connections that slow every launch.
CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# A shared 2-core machine: generous, but a hung page still fails the test.
TIMEOUT_MS = 20_000


def _require_chromium() -> None:
    # Not a skip: `make test` installs chromium first, and a browser test that silently
    # does not run is a test that cannot fail.
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(f"{CHROMIUM} is missing: run `make chromium` (as root) first")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    _require_chromium()
    pw = sync_playwright().start()
    try:
        yield pw
    finally:
        pw.stop()
        # The sync API must not leave its loop set as this thread's running loop, or
        # every async test after this module would fail to start its own.
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Debian chromium. Playwright gives every launch a fresh temporary
    user-data directory (and deletes it at close), so no profile state leaks in."""
    b = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
    )
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A new context per test: its own cookies and storage, downloads accepted."""
    ctx = browser.new_context(
        accept_downloads=True, locale="nl-NL", viewport={"width": 1280, "height": 900}
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as build/screenshots/<name>.png and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
