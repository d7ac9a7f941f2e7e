"""Acceptance 1 of issue 6: a privacy officer's session in Debian's chromium against a
hub run as an OS process, seeded with real exchanges through the client library.

Log in, filter the exchanges, open an exchange and see its inclusion proof verified,
produce a subject-access report and download its CSV, download the compliance
export ZIP. Every step leaves a screenshot in build/screenshots/ (review-*.png).
The expected answers (which exchanges concern the subject) are computed here from
what the test itself sent, not read back from the hub.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Page, expect

from gateway.adapters.client import HubClient
from tests.browser.conftest import screenshot
from tests.conftest import synthetic_pid
from tests.e2e.hubproc import REPO, Processes
from tests.ops.support import GGZ, POLICE, ZVH, OpsHub, make_ops_hub, open_case

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OFFICER = "fg-browser"
PASSWORD = "Browser-test-wachtwoord-77"
CASE, OTHER_CASE = "ZVH-BROWSER-1", "ZVH-BROWSER-2"
SUBJECT, OTHER_SUBJECT = "S-BR-1", "S-BR-2"
OTHER_PID = synthetic_pid("111222333")
LAW = "Wet gegevensverwerking samenwerkingsverbanden art. 2.1"
BASIS = {
    "gdpr_art6": "e",
    "national_law": LAW,
    "secrecy_permission": "statutory-duty",
    "five_questions": {
        "purpose": "veiligheid van de betrokkene",
        "necessity": "zonder contactgegevens geen afstemming",
        "subsidiarity": "niet op een minder ingrijpende manier te verkrijgen",
        "proportionality": "alleen contactgegevens",
        "effectiveness": "maakt afstemming tussen hulpverleners mogelijk",
    },
}
EXPORT_FILES = {
    "indicators.json",
    "members.json",
    "accessions.csv",
    "declarations.csv",
    "refusals.json",
    "refusal_counts.csv",
    "checkpoint.txt",
    "verification.json",
}
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on an event loop in a thread of its own: Playwright's sync API
    may hold this thread's loop slot (see tests/browser/conftest.py)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class Seeded:
    hub: OpsHub
    dat_id: str = ""
    wat_id: str = ""
    other_id: str = ""
    # (type, exchange_id) of every entry about the subject, as the test sent them.
    about_subject: list[tuple[str, str]] = field(default_factory=list)


async def _seed(hub: OpsHub) -> Seeded:
    seeded = Seeded(hub)
    await open_case(hub, CASE, SUBJECT, participants=(GGZ, POLICE))
    async with hub.client(ZVH) as zvh, hub.client(POLICE) as police, hub.client(GGZ) as ggz:
        await zvh.register_case(
            OTHER_CASE, "huiselijk-geweld", [(OTHER_SUBJECT, OTHER_PID)], [POLICE]
        )
        dat = await zvh.dat_request(CASE, SUBJECT, [GGZ, POLICE], {"vraag": "bekend?"})
        seeded.dat_id = dat["exchange_id"]
        await answer_all(police, "known", {"contact": "wijkagent"})
        await answer_all(ggz, "not-known", None)
        wat = await zvh.wat_request(
            CASE,
            SUBJECT,
            POLICE,
            categories=["contact"],
            purpose="afstemming hulpverlening",
            processing_activity="mda-plus-plus",
            legal_basis=BASIS,
            body={"vraag": "contactgegevens"},
        )
        seeded.wat_id = wat["exchange_id"]
        await answer_all(police, "release", {"contact": "via casusregisseur"})
        other = await zvh.dat_request(OTHER_CASE, OTHER_SUBJECT, [POLICE], {"vraag": "bekend?"})
        seeded.other_id = other["exchange_id"]
        await answer_all(police, "not-known", None)
        await drain(zvh, 4)
    seeded.about_subject = [
        ("dat-request", seeded.dat_id),
        ("dat-answer", seeded.dat_id),
        ("dat-answer", seeded.dat_id),
        ("wat-request", seeded.wat_id),
        ("wat-answer", seeded.wat_id),
    ]
    return seeded


async def answer_all(client: HubClient, decision: str, body: dict[str, str] | None) -> None:
    messages = await client.fetch(wait=5)
    assert messages, f"{client.keys.org} got nothing"
    for m in messages:
        await client.answer(m, decision, body)
    await client.ack([m.message_id for m in messages])


async def drain(client: HubClient, count: int) -> None:
    got = 0
    deadline = time.monotonic() + 15
    while got < count and time.monotonic() < deadline:
        messages = await client.fetch(wait=2)
        got += sum(m.kind != "notification" for m in messages)  # dat-match comes too
        await client.ack([m.message_id for m in messages])
    assert got == count


def add_officer(config: Path) -> None:
    """`zvh-gateway users add`, as an operator runs it, the password on stdin."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "gateway", "users", "add"),
            *("--config", str(config), "--name", OFFICER, "--role", "privacy-officer"),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr


def wait_for_checkpoint(hub: OpsHub, size: int) -> None:
    """Poll the signed checkpoint until it covers `size` entries (signed within 2 s)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with urllib.request.urlopen(hub.url + "/api/v1/ledger/checkpoint", timeout=5) as r:
            note = r.read().decode()
        if int(note.split("\n")[1]) >= size:
            return
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint covers {size} entries:\n{note}")


def ledger_size(hub: OpsHub) -> int:
    conn = sqlite3.connect(f"file:{hub.setup.database}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    procs = Processes()
    try:
        hub = make_ops_hub(tmp_path_factory.mktemp("browser-hub"), procs)
        data = run_async(_seed(hub))
        add_officer(hub.setup.config)
        wait_for_checkpoint(hub, ledger_size(hub))
        yield data
    finally:
        procs.cleanup()


def log_in(page: Page, url: str) -> None:
    page.goto(url + "/review/")
    expect(page).to_have_url(url + "/review/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Inloggen privacytoezicht")
    page.get_by_label("Gebruikersnaam").fill(OFFICER)
    page.get_by_label("Wachtwoord").fill(PASSWORD)
    screenshot(page, "review-01-login")
    page.get_by_role("button", name="Inloggen").click()
    expect(page).to_have_url(url + "/review/exchanges")
    expect(page.get_by_text(f"Ingelogd als {OFFICER} (privacy-officer)")).to_be_visible()


def test_officer_filters_opens_an_exchange_and_sees_its_proof_verified(
    seeded: Seeded, page: Page
) -> None:
    url = seeded.hub.url
    log_in(page, url)
    rows = page.locator("table tbody tr")
    expect(rows.first).to_be_visible()
    screenshot(page, "review-02-exchanges")
    # Filter: wat steps of the case only.
    page.get_by_label("Casus").fill(CASE)
    page.get_by_label("Soort").select_option("wat")
    page.get_by_role("button", name="Filteren").click()
    expect(page).to_have_url(
        f"{url}/review/exchanges?from=&until=&org=&case={CASE}&theme=&type=wat&decision=&code="
    )
    expect(rows).to_have_count(2)
    types = [rows.nth(i).locator("td").nth(2).inner_text() for i in range(2)]
    assert types == ["wat-answer", "wat-request"]
    assert {rows.nth(i).locator("td").nth(3).inner_text() for i in range(2)} == {CASE}
    screenshot(page, "review-03-filtered")
    # An organisation filter that matches nothing says so in Dutch.
    page.get_by_label("Organisatie").fill("niemand-hier")
    page.get_by_role("button", name="Filteren").click()
    expect(page.get_by_text("Geen uitwisselingen gevonden.")).to_be_visible()
    page.go_back()
    # Open the wat exchange.
    page.get_by_role("link", name=seeded.wat_id).first.click()
    expect(page).to_have_url(f"{url}/review/exchanges/{seeded.wat_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Uitwisseling {seeded.wat_id}")
    expect(page.locator("p.ok")).to_contain_text("Bewijs geverifieerd")
    steps = page.locator("table tbody tr")
    expect(steps).to_have_count(2)
    expect(steps.locator("span.ok")).to_have_count(2)
    expect(page.get_by_text("Volledig", exact=True)).to_be_visible()
    expect(page.get_by_text(LAW)).to_be_visible()
    screenshot(page, "review-04-exchange")


def test_officer_downloads_the_subject_report_csv_and_the_compliance_export(
    seeded: Seeded, page: Page, tmp_path: Path
) -> None:
    url = seeded.hub.url
    log_in(page, url)
    page.get_by_role("link", name="Inzageverzoek").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Inzageverzoek (AVG art. 15)")
    # This hub has no pseudonymiser: the page says so, and the pid form works.
    expect(page.get_by_role("status")).to_contain_text("niet aangesloten")
    expect(page.get_by_label("BSN", exact=True)).to_have_count(0)
    page.get_by_label("Pseudoniem (pid)").fill(synthetic_pid())
    page.locator("#format-pid").select_option("html")
    page.get_by_role("button", name="Rapport maken op pseudoniem").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(len(seeded.about_subject))
    shown = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
    assert shown == [t for t, _ in seeded.about_subject]
    screenshot(page, "review-05-subject-report")

    page.locator("#format-pid").select_option("csv")
    with page.expect_download() as info:
        page.get_by_role("button", name="Rapport maken op pseudoniem").click()
    download = info.value
    assert download.suggested_filename == "inzage.csv"
    target = tmp_path / "inzage.csv"
    download.save_as(target)
    table = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert [r["type"] for r in table] == [t for t, _ in seeded.about_subject]
    assert {r["case_ref"] for r in table} == {CASE}
    assert OTHER_CASE not in target.read_text(encoding="utf-8")
    wat = next(r for r in table if r["type"] == "wat-request")
    assert wat["to"] == POLICE
    assert wat["from"] == ZVH
    assert wat["categories"] == "contact"
    assert wat["purpose"] == "afstemming hulpverlening"
    assert json.loads(wat["legal_basis"])["national_law"] == LAW

    page.get_by_role("link", name="Deelnemers en verklaringen").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    screenshot(page, "review-06-members")
    with page.expect_download() as info:
        page.get_by_role("button", name="Compliance-export downloaden (ZIP)").click()
    download = info.value
    assert download.suggested_filename == "compliance-export.zip"
    target = tmp_path / "export.zip"
    download.save_as(target)
    with zipfile.ZipFile(target) as archive:
        assert set(archive.namelist()) == EXPORT_FILES
        indicators = json.loads(archive.read("indicators.json"))
        verification = json.loads(archive.read("verification.json"))
        checkpoint = archive.read("checkpoint.txt").decode()
    assert indicators["signed_protocol_per_partner"] == {
        "ggz-test": True,
        "politie-test": True,
        "vt-test": True,
        "zvh-test": True,
    }
    assert verification["ok"] is True
    assert checkpoint.startswith("hub-test.zvh-gateway/v1\n")

    page.get_by_role("link", name="Weigeringen").click()
    screenshot(page, "review-07-refusals")
    page.get_by_role("link", name="Grootboek").click()
    screenshot(page, "review-08-ledger")
    page.get_by_role("button", name="Uitloggen").click()
    expect(page).to_have_url(url + "/review/login")
