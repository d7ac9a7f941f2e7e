"""The browser fixtures themselves: Debian's chromium starts headless through
Playwright, renders a page served over real loopback HTTP, and screenshots are PNGs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import screenshot

HTML = (
    b"<!doctype html><html lang='nl'><head><meta charset='utf-8'><title>Proef</title></head>"
    b"<body><h1>Inzage</h1><p id='x'>Gegevensbescherming</p></body></html>"
)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(HTML)))
        self.end_headers()
        self.wfile.write(HTML)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output quiet


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_debian_chromium_renders_and_screenshots(browser: Browser, page: Page, site: str) -> None:
    assert "HeadlessChrome" in page.evaluate("navigator.userAgent")
    assert browser.version.split(".")[0].isdigit()
    page.goto(site)
    assert page.title() == "Proef"
    assert page.locator("#x").inner_text() == "Gegevensbescherming"
    path = screenshot(page, "infrastructure")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
