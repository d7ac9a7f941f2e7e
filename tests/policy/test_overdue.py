"""Overdue wat decisions (GET /api/v1/exchanges/overdue), on a hub whose clock the test
moves: a wat-request past its theme's deadline_hours is listed for its requester and
its holder, for nobody else, and no longer once the holder has decided."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.adapters.client import HubClient
from gateway.clock import FrozenClock, SystemClock
from gateway.web.hub_app import HubServer, build_hub
from tests.conftest import MEMBERS, free_port, make_hub_dir, synthetic_pid
from tests.policy.support import BASIS, CASE, SUBJECT

HOUR_S = 3600


@dataclass
class ClockedHub:
    clock: FrozenClock
    clients: dict[str, HubClient]


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[ClockedHub]:
    settings, keys = make_hub_dir(tmp_path, free_port())
    # Not FrozenClock's default instant: the protocol was published at the real "now",
    # and must already be in force on the hub's clock.
    clock = FrozenClock(SystemClock().now_ms())
    server = HubServer(build_hub(settings, clock=clock))
    await server.start()
    url = f"http://127.0.0.1:{settings.http.port}"
    clients = {org: HubClient(url, keys[org], clock=clock) for org in (*MEMBERS, "woon-test")}
    try:
        for org in MEMBERS:
            await clients[org].accede()
        yield ClockedHub(clock, clients)
    finally:
        for client in clients.values():
            await client.close()
        await server.stop()


async def overdue_ids(client: HubClient) -> list[str]:
    return [str(item["exchange_id"]) for item in await client.overdue()]


@pytest.mark.parametrize(
    ("theme", "deadline_hours", "needs_dat"),
    [("zsm-advies", 4, False), ("huiselijk-geweld", 72, True)],
)
async def test_overdue_until_answered(
    clocked: ClockedHub, theme: str, deadline_hours: int, needs_dat: bool
) -> None:
    c = clocked.clients
    await c["zvh-test"].register_case(
        CASE, theme, [(SUBJECT, synthetic_pid())], ["politie-test", "vt-test"]
    )
    if needs_dat:
        asked = await c["zvh-test"].dat_request(CASE, SUBJECT, ["vt-test"], {"q": "known?"})
        [dat] = [m for m in await c["vt-test"].fetch() if m.exchange_id == asked["exchange_id"]]
        await c["vt-test"].answer(dat, "known", {"contact": "team Noord"})
    sent_ms = clocked.clock.now_ms()
    response = await c["politie-test"].wat_request(
        CASE,
        SUBJECT,
        "vt-test",
        categories=["contact"],
        purpose="risicotaxatie",
        processing_activity="mda-plus-plus",
        legal_basis=BASIS,
        body={"question": "wie is de casemanager?"},
    )
    xid = str(response["exchange_id"])
    assert response["deadline_ms"] == sent_ms + deadline_hours * HOUR_S * 1000

    # Not yet due, and exactly at the deadline still not overdue.
    clocked.clock.advance(deadline_hours * HOUR_S)
    for org in ("politie-test", "vt-test"):
        assert await overdue_ids(c[org]) == []

    clocked.clock.advance(1)
    [item] = await c["politie-test"].overdue()
    assert item["exchange_id"] == xid
    assert (item["requester"], item["holder"]) == ("politie-test", "vt-test")
    assert (item["case_ref"], item["subject_ref"]) == (CASE, SUBJECT)
    assert item["deadline_ms"] == response["deadline_ms"]
    assert await overdue_ids(c["vt-test"]) == [xid]
    # Neither requester nor holder: not theirs to see.
    assert await overdue_ids(c["zvh-test"]) == []
    assert await overdue_ids(c["ggz-test"]) == []

    [request] = [m for m in await c["vt-test"].fetch() if m.exchange_id == xid]
    assert request.kind == "wat-request"
    await c["vt-test"].answer(request, "refuse", reason_code="not-necessary")
    for org in ("politie-test", "vt-test"):
        assert await overdue_ids(c[org]) == []
    clocked.clock.advance(30 * 24 * HOUR_S)
    assert await overdue_ids(c["politie-test"]) == []
