"""The subject-access report by BSN and birth date in Debian's chromium, with the
pseudonymiser, the index and a hub each its own OS process (as in
tests/federation/test_e2e_national.py): the officer types BSN and birth date, sees
the report and the pid the hub computed, and downloads the CSV, which is byte for
byte the pid route's. Afterwards no file or log of any node holds the BSN or the
birth date (the hub's database included), while the pid is where it may be."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from gateway.adapters.client import HubClient
from gateway.crypto.keys import OrgKeys
from gateway.demo_national import Region, prepare_national
from tests.browser.conftest import screenshot
from tests.browser.test_review_pages import add_officer, log_in, run_async
from tests.conftest import BIRTH, BSN, free_port
from tests.e2e.hubproc import Processes, iter_files
from tests.federation.conftest import RFC_INFO, RFC_SEED_HEX
from tests.federation.nodeproc import NodeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BIRTH_DATE = f"{BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}"
CASE = "ZVH-BSN-0001"


@dataclass
class NationalHub:
    url: str
    nodes: list[NodeProcess]
    pid: str
    exchanges: int
    net_dir: Path


async def _seed(prepared: dict[str, Any]) -> tuple[str, int]:
    """The region's members accede; its ZVH computes the person's pid through the hub
    and asks two holders about the person twice. Returns the pid and the number of
    dat-requests about the person."""
    region = prepared["regions"][0]
    assert isinstance(region, Region)
    urls = {n["org"]: n["url"] for n in prepared["network"]["nodes"]}
    clients = {
        p["org"]: HubClient(urls[p["hub"]], OrgKeys.load(p["key_file"]), timeout_s=20)
        for p in prepared["network"]["partners"]
    }
    try:
        for client in clients.values():
            await client.accede()
        zvh = clients[region.zvh]
        pid = await zvh.pseudonym(BSN, BIRTH_DATE)
        await zvh.register_case(CASE, "huiselijk-geweld", [("S1", pid)], [region.om, region.vt])
        for _ in range(2):
            await zvh.dat_request(CASE, "S1", [region.om, region.vt], {"vraag": "bekend?"})
        return pid, 2
    finally:
        for client in clients.values():
            await client.close()


@pytest.fixture(scope="module")
def national_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NationalHub]:
    base = tmp_path_factory.mktemp("national")
    prepared = prepare_national(
        base / "net",
        0,
        hubs=1,
        oprf_seed_hex=RFC_SEED_HEX,
        oprf_info=RFC_INFO,
        port_of=lambda _: free_port(),
    )
    logs = base / "logs"
    logs.mkdir()
    urls = {n["org"]: n["url"] for n in prepared["network"]["nodes"]}
    procs = Processes()
    try:
        nodes = [
            NodeProcess(
                "pseudonymiser",
                prepared["pseudonymiser_config"],
                urls["pseudonymiser-nl"],
                logs,
                procs,
            ),
            NodeProcess("index", prepared["index_config"], urls["index-nl"], logs, procs),
        ]
        ((hub_org, hub_config),) = prepared["hub_configs"].items()
        add_officer(hub_config)
        nodes.append(NodeProcess(hub_org, hub_config, urls[hub_org], logs, procs))
        for node in nodes:
            node.spawn()
            node.wait_ready()
        pid, exchanges = run_async(_seed(prepared))
        yield NationalHub(urls[hub_org], nodes, pid, exchanges, base)
    finally:
        procs.cleanup()


def test_officer_asks_by_bsn_and_gets_the_pid_routes_report(
    national_hub: NationalHub, page: Page
) -> None:
    url = national_hub.url
    log_in(page, url)
    page.get_by_role("link", name="Inzageverzoek").click()
    page.get_by_label("BSN", exact=True).fill("230857104")  # fails the 11-test
    page.get_by_label("Geboortedatum").fill(BIRTH_DATE)
    page.get_by_role("button", name="Rapport maken op BSN").click()
    expect(page.get_by_role("alert")).to_contain_text("elfproef")
    expect(page.get_by_label("BSN", exact=True)).to_have_value("")  # not echoed
    screenshot(page, "review-09-bsn-refused")

    page.get_by_label("BSN", exact=True).fill(BSN)
    page.get_by_label("Geboortedatum").fill(BIRTH_DATE)
    page.locator("#format-bsn").select_option("html")
    page.get_by_role("button", name="Rapport maken op BSN").click()
    expect(page.get_by_text("Gezocht op BSN en geboortedatum")).to_be_visible()
    expect(page.locator("code")).to_have_text(national_hub.pid)
    rows = page.locator("table tbody tr")
    requests = rows.filter(has=page.locator("td", has_text="dat-request"))
    expect(requests).to_have_count(national_hub.exchanges)
    assert BSN not in page.content()
    screenshot(page, "review-10-bsn-report")

    downloads: dict[str, bytes] = {}
    for route in ("bsn", "pid"):
        if route == "bsn":
            page.get_by_label("BSN", exact=True).fill(BSN)
            page.get_by_label("Geboortedatum").fill(BIRTH)
        else:
            page.get_by_label("Pseudoniem (pid)").fill(national_hub.pid)
        page.locator(f"#format-{route}").select_option("csv")
        with page.expect_download() as info:
            button = "Rapport maken op BSN" if route == "bsn" else "Rapport maken op pseudoniem"
            page.get_by_role("button", name=button).click()
        path = info.value.path()
        assert path is not None
        downloads[route] = Path(path).read_bytes()
    assert downloads["bsn"] == downloads["pid"]
    assert downloads["bsn"].count(b"dat-request") == national_hub.exchanges
    assert CASE.encode() in downloads["bsn"]

    for node in national_hub.nodes:
        assert node.stop() == 0, node.logs()
    files = {p: p.read_bytes() for p in iter_files(national_hub.net_dir)}
    assert any(p.name == "hub.sqlite3" for p in files)
    assert sum(p.name.endswith(".stderr.log") for p in files) == 3
    for needle in (BSN, BIRTH, BIRTH_DATE):
        hits = [str(p) for p, data in files.items() if needle.encode() in data]
        assert hits == [], needle
    hub_db = b"".join(data for p, data in files.items() if p.name.startswith("hub.sqlite3"))
    assert national_hub.pid.encode() in hub_db  # the search reads real content
