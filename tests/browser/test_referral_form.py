"""Acceptance 4 of issue 8: a professional fills in the referral form (aanmeldformulier)
in Debian's chromium, served by the police's adapter (an OS process); a wrong BSN gets
the Dutch 11-test message, the corrected form is sent, and the ZVH's adapter delivers
the referral to the ZVH's (fake) case system, which receives exactly the entered
fields. Screenshots in build/screenshots/aanmelden-*.png.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.adapters.support import AdapterProcess, AdapterSetup, init_adapter, set_config
from tests.browser.conftest import screenshot
from tests.conftest import BSN, NAME, free_port
from tests.e2e.hubproc import HubProcess, Processes, create_hub

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUB, ZVH, POLICE, GGZ = "hub-form", "zvh-form", "politie-form", "ggz-form"
PARTNERS = ((ZVH, "zvh", "bestuur"), (POLICE, "partner", "straf"), (GGZ, "partner", "zorg"))
WRONG_BSN = BSN[:-1] + str((int(BSN[-1]) + 1) % 10)


class CaseSystem:
    """The ZVH's case system behind its adapter's webhook: a plain threaded HTTP server
    (the test thread belongs to Playwright's sync API)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                item = json.loads(self.rfile.read(length))
                outer.received.append((self.headers["Idempotency-Key"], item))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return  # the items hold personal data: never on stderr

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/zvh"

    def referrals(self) -> list[dict[str, Any]]:
        return [i for _, i in self.received if i["kind"] == "referral"]


@pytest.fixture
def case_system() -> Iterator[CaseSystem]:
    system = CaseSystem()
    system.thread.start()
    try:
        yield system
    finally:
        system.server.shutdown()
        system.server.server_close()


def _accede(adapter: AdapterSetup) -> None:
    request = urllib.request.Request(
        adapter.url + "/local/v1/accessions",
        data=b"{}",
        method="POST",
        headers={
            "Authorization": f"Bearer {adapter.token}",
            "Idempotency-Key": f"accede-{adapter.org}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 201


def test_professional_refers_a_person_through_the_form(
    tmp_path: Path, procs: Processes, case_system: CaseSystem, page: Page
) -> None:
    setup = create_hub(tmp_path, HUB, PARTNERS)
    HubProcess(setup, procs).start()
    zvh = init_adapter(tmp_path, setup, ZVH, webhook_url=case_system.url)
    police = init_adapter(tmp_path, setup, POLICE, webhook_url=case_system.url, form=True)
    set_config(police, r"^\[form\]", '[form]\norganisation_name = "Politie Eenheid Test"')
    ggz = init_adapter(tmp_path, setup, GGZ, webhook_url=case_system.url)
    for adapter in (zvh, police, ggz):
        AdapterProcess(adapter, procs).start()
        _accede(adapter)

    page.goto(police.url + "/aanmelden")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Aanmelden bij het Zorg- en Veiligheidshuis"
    )
    expect(page.get_by_text("Namens Politie Eenheid Test")).to_be_visible()
    page.get_by_label("Naam *", exact=True).fill(NAME)
    page.get_by_label("BSN *").fill(WRONG_BSN)
    page.get_by_label("Geboortedatum *").fill("03-02-1980")
    page.get_by_label("Straat en huisnummer *").fill("Voorbeeldstraat 12")
    page.get_by_label("Postcode *").fill("3011 AB")
    page.get_by_label("Woonplaats *").fill("Rotterdam")
    page.get_by_label("Reden van de aanmelding *").fill("Zorgen over escalerend geweld.")
    page.get_by_label("Doel van de aanmelding *").fill("Gezamenlijk plan van aanpak.")
    page.get_by_label(GGZ).check()
    page.get_by_label("Ja", exact=True).check()
    page.get_by_label("Zo ja: hoe is de persoon geïnformeerd?").fill("In een gesprek thuis.")
    page.get_by_label("Uw naam *").fill("J. de Vries, wijkagent")
    page.get_by_label("Uw telefoonnummer").fill("0900-8844")
    screenshot(page, "aanmelden-1-ingevuld")
    page.get_by_role("button", name="Aanmelding verzenden").click()

    # The Dutch 11-test message, at the field and in the summary; nothing was sent.
    expect(page.locator("#fout-bsn")).to_have_text(
        "Dit BSN is ongeldig: het voldoet niet aan de elfproef. Controleer het nummer."
    )
    expect(page.locator("#foutmeldingen")).to_contain_text("elfproef")
    expect(page.get_by_label("Woonplaats *")).to_have_value("Rotterdam")  # values kept
    expect(page.get_by_label(GGZ)).to_be_checked()
    screenshot(page, "aanmelden-2-fout-bsn")
    assert case_system.referrals() == []

    page.get_by_label("BSN *").fill(BSN)
    page.get_by_role("button", name="Aanmelding verzenden").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Aanmelding verzonden")
    reference = page.locator("#kenmerk").inner_text()
    screenshot(page, "aanmelden-3-verzonden")

    deadline = time.monotonic() + 30
    while not case_system.referrals() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the fake case system's list
    [referral] = case_system.referrals()
    assert (referral["from"], referral["exchange_id"]) == (POLICE, reference)
    assert referral["body"] == {
        "soort": "aanmelding",
        "persoon": {
            "naam": NAME,
            "bsn": BSN,
            "geboortedatum": "1980-02-03",
            "adres": {
                "straat": "Voorbeeldstraat 12",
                "postcode": "3011 AB",
                "woonplaats": "Rotterdam",
            },
        },
        "reden": "Zorgen over escalerend geweld.",
        "doel": "Gezamenlijk plan van aanpak.",
        "partners": [GGZ],
        "geinformeerd": True,
        "hoe_geinformeerd": "In een gesprek thuis.",
        "melder": {"naam": "J. de Vries, wijkagent", "telefoon": "0900-8844"},
    }
