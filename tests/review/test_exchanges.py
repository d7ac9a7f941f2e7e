"""The review API over a seeded ledger: filters, keyset paging, the exchange detail
with its verified inclusion proof, members and refusals."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from gateway.ledger.merkle import verify_inclusion
from tests.conftest import Network
from tests.review.conftest import Browser
from tests.web.helpers import SUBJECT, open_case


async def api(browser: Browser, path: str) -> Any:
    reply = await browser.get(path)
    assert reply.status == 200, reply.text
    return json.loads(reply.text)


async def listed(browser: Browser, query: str) -> list[int]:
    data = await api(browser, "/api/v1/review/exchanges?" + query)
    return [item["idx"] for item in data["items"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("case=C-A", ["wat-refused", "wat", "dat-answer", "dat"]),
        ("case=C-B", ["denied-basis", "denied-category"]),
        ("type=dat", ["dat-answer", "dat"]),
        ("type=wat&case=C-A", ["wat-refused", "wat"]),
        ("type=denied&org=ggz-test", ["denied-basis", "denied-category"]),
        ("org=ggz-test&until=2026-06-30", ["denied-basis", "denied-category"]),
        ("decision=refuse", ["wat-refused"]),
        ("code=legal-basis-missing", ["denied-basis"]),
        ("theme=huiselijk-geweld", ["wat"]),
        (
            "from=2026-02-01&until=2026-02-28",
            [
                "denied-basis",
                "denied-category",
                "wat-refused",
                "wat",
            ],
        ),
        ("from=2026-01-01&until=2026-01-15", ["dat-answer", "dat"]),
        ("case=C-A&org=ggz-test", []),
    ],
)
async def test_filters(
    browser: Browser, seeded: dict[str, int], query: str, expected: list[str]
) -> None:
    assert await listed(browser, query) == [seeded[name] for name in expected]


async def test_keyset_paging(browser: Browser, seeded: dict[str, int]) -> None:
    first = await api(browser, "/api/v1/review/exchanges?case=C-A&limit=3")
    assert [i["idx"] for i in first["items"]] == [
        seeded["wat-refused"],
        seeded["wat"],
        seeded["dat-answer"],
    ]
    before = first["next_before"]
    rest = await api(browser, f"/api/v1/review/exchanges?case=C-A&limit=3&before={before}")
    assert [i["idx"] for i in rest["items"]] == [seeded["dat"]]
    assert rest["next_before"] is None


@pytest.mark.parametrize("query", ["type=nonsense", "from=15-01-2026", "limit=0", "before=-1"])
async def test_bad_filters_are_400(browser: Browser, seeded: dict[str, int], query: str) -> None:
    reply = await browser.get("/api/v1/review/exchanges?" + query)
    assert reply.status == 400


async def test_refusals(browser: Browser, seeded: dict[str, int]) -> None:
    data = await api(browser, "/api/v1/review/refusals")
    counts = {(c["code"], c["org"], c["month"]): c["count"] for c in data["counts"]}
    assert counts == {
        ("refuse", "vt-test", "2026-02"): 1,
        ("category-not-allowed", "ggz-test", "2026-02"): 1,
        ("legal-basis-missing", "ggz-test", "2026-02"): 1,
    }
    # The cases to discuss: refused or denied although the basis was complete.
    assert [r["idx"] for r in data["complete_basis_refusals"]] == [
        seeded["denied-category"],
        seeded["wat-refused"],
    ]


async def test_members(officer: Network, browser: Browser) -> None:
    await browser.login()
    data = await api(browser, "/api/v1/review/members")
    assert data["current_protocol"] is not None
    assert sorted(data["accessions_by_version"]["1"]) == [
        "ggz-test",
        "politie-test",
        "vt-test",
        "zvh-test",
    ]
    # The incidental partner has signed no geheimhoudingsverklaring.
    assert data["lacking"] == ["woon-test"]
    page = await browser.get("/review/members")
    assert page.status == 200
    assert "woon-test" in page.text


async def test_exchange_detail_proof_verifies(officer: Network, browser: Browser) -> None:
    await open_case(officer)
    politie = officer.client("politie-test")
    xid = str(uuid.uuid4())
    await politie.dat_request("C-1", SUBJECT, ["vt-test"], {"q": "bekend?"}, exchange_id=xid)
    head = await officer.hub.ledger.sign(force=True)
    assert head is not None
    await browser.login()
    data = await api(browser, f"/api/v1/review/exchanges/{xid}")
    assert data["verified"] is True
    assert data["checkpoint"]["size"] == head.size
    [step] = data["steps"]
    assert step["type"] == "dat-request"
    assert step["body"]["requester"] == "politie-test"
    # Check the proof ourselves, against the signed checkpoint's root.
    proof = step["proof"]
    assert verify_inclusion(
        step["idx"],
        head.size,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(p) for p in proof["path"]],
        head.root,
    )
    relied = {a["org"] for a in data["relied_on"]["accessions"]}
    assert relied == {"politie-test", "vt-test"}
    page = await browser.get(f"/review/exchanges/{xid}")
    assert page.status == 200
    assert "Bewijs geverifieerd" in page.text
    listing = await browser.get("/review/exchanges?type=dat")
    assert xid in listing.text


async def test_a_step_after_the_checkpoint_is_not_claimed_verified(
    browser: Browser, seeded: dict[str, int]
) -> None:
    # The seed was appended offline; no checkpoint covers it until the hub signs.
    data = await api(browser, "/api/v1/review/exchanges/x-2")
    assert [s["idx"] for s in data["steps"]] == [seeded["wat"], seeded["wat-refused"]]
    assert data["legal_basis"]["complete"] is True
    assert data["legal_basis"]["legal_basis"]["national_law"].startswith("Wet verplichte")
    if not data["verified"]:
        assert all(not s["proof"]["verified"] for s in data["steps"])


async def test_unknown_exchange_is_404(browser: Browser, seeded: dict[str, int]) -> None:
    reply = await browser.get("/api/v1/review/exchanges/no-such-exchange")
    assert reply.status == 404
    page = await browser.get("/review/exchanges/no-such-exchange")
    assert page.status == 404
