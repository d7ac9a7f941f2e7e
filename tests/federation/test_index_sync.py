"""The hub keeps the index in step with its cases: registration with the case
(write-ahead), renewal while open, closure, retries while the index is away."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.storage import national_store
from tests.conftest import BIRTH, BSN
from tests.federation.conftest import NationalNet, run_national
from tests.federation.support import CASE_THEME, eventually, rows, synced

DAY_MS = 86_400_000


def index_rows(nat: NationalNet) -> list[tuple[str, str, int, int]]:
    return [
        (str(r[0]), str(r[1]), int(r[2]), int(r[3]))
        for r in rows(
            nat.index.node.settings.node.database,
            "SELECT hub, status, since_ms, lease_until_ms FROM index_registrations ORDER BY hub",
        )
    ]


def outbox(nat: NationalNet, i: int) -> list[tuple[object, ...]]:
    return rows(
        nat.hub(i).settings.node.database,
        "SELECT status, pending, attempts, lease_until_ms FROM index_outbox",
    )


async def test_case_registration_and_closure_reach_the_index(nat: NationalNet) -> None:
    a = nat.regions[0]
    zvh = nat.client(a.zvh)
    pid = await zvh.pseudonym(BSN, BIRTH)
    res = await zvh.register_case("C-1", CASE_THEME, [("S1", pid)], [a.vt])
    assert res["status"] == "open"

    async def registered() -> bool:
        # At the index, and confirmed in the hub's outbox (a moment later).
        pushed = [r[:2] for r in index_rows(nat)] == [(a.hub, "open")]
        return pushed and outbox(nat, 0)[0][1] == 0

    await eventually(registered, 5.0)  # woken by the commit, not by a poll
    [(_, _, since, lease)] = index_rows(nat)
    now = int(time.time() * 1000)
    assert now - 5000 < since <= now
    assert lease > now + DAY_MS - 60_000  # lease_days = 1 in these tests
    assert outbox(nat, 0) == [("open", 0, 0, lease)]
    # The same pid in a second case: still one registration, since the first case.
    await zvh.register_case("C-2", CASE_THEME, [("S1", pid)], [a.vt])
    await synced(nat.hub(0))
    assert [r[:3] for r in index_rows(nat)] == [(a.hub, "open", since)]
    lease = index_rows(nat)[0][3]
    # Closing one case leaves the pid open; closing the other closes it, with the lease
    # it had (never more than the hub's own retention of the case's pids).
    await zvh.close_case("C-1")
    await synced(nat.hub(0))
    assert index_rows(nat)[0][1] == "open"
    await zvh.close_case("C-2")
    await synced(nat.hub(0))
    [(_, status, since_after, lease_after)] = index_rows(nat)
    assert (status, since_after) == ("closed", since)
    assert lease_after <= lease
    found = await nat.client(nat.regions[1].om).known_check(pid, "zsm-advies")
    assert [(m["hub"], m["status"]) for m in found["matches"]] == [(a.hub, "closed")]


async def test_the_registration_is_queued_with_the_case_and_retried(nat: NationalNet) -> None:
    a = nat.regions[0]
    hub = nat.hub(0)
    zvh = nat.client(a.zvh)
    pid = await zvh.pseudonym(BSN, BIRTH)
    await nat.stop_index()
    await zvh.register_case("C-3", CASE_THEME, [("S1", pid)], [a.vt])
    # Durable with the case: the outbox row committed with it, before the answer.
    assert outbox(nat, 0)[0][:2] == ("open", 1)
    await synced(hub)
    status, pending, attempts, lease = outbox(nat, 0)[0]
    assert (status, pending, lease) == ("open", 1, None)
    assert isinstance(attempts, int)
    assert attempts >= 1
    assert "zvh_gateway_national_outbox_pending 1.0" in hub.metrics.render().decode()
    await nat.start_index()

    async def confirmed() -> bool:
        return outbox(nat, 0)[0][1:3] == (0, 0)

    waited = await eventually(confirmed, 15.0)  # after the backoff, by the task
    assert waited < 10.0
    assert [r[:2] for r in index_rows(nat)] == [(a.hub, "open")]


async def test_open_registrations_are_renewed_and_closed_ones_expire(tmp_path: Path) -> None:
    lease_s = 3.0
    national = {"lease_days": lease_s / 86_400, "renew_interval_s": 0.5}
    async with run_national(tmp_path, hubs=1, national=national) as nat:
        a = nat.regions[0]
        zvh = nat.client(a.zvh)
        pid = await zvh.pseudonym(BSN, BIRTH)
        await zvh.register_case("C-4", CASE_THEME, [("S1", pid)], [a.vt])

        async def registered() -> bool:
            return len(index_rows(nat)) == 1

        await eventually(registered)
        first = index_rows(nat)[0][3]

        async def renewed() -> bool:
            return index_rows(nat)[0][3] > first

        await eventually(renewed, 5.0)
        await zvh.close_case("C-4")

        async def closed() -> bool:
            return index_rows(nat)[0][1] == "closed"

        await eventually(closed)
        lease = index_rows(nat)[0][3]
        assert lease <= int(time.time() * 1000) + lease_s * 1000
        # No more renewals: the lease runs out, lookups stop finding it, and the hub
        # forgets the pid once it has.
        om = nat.client(a.om)

        async def gone() -> bool:
            found: list[object] = (await om.known_check(pid, "zsm-advies"))["matches"]
            return found == []

        await eventually(gone, lease_s + 3)
        assert index_rows(nat)[0][3] == lease

        async def forgotten() -> bool:
            await synced(nat.hub(0))
            return outbox(nat, 0) == []

        await eventually(forgotten, 5.0)


async def test_reconcile_queues_what_the_cases_say(nat: NationalNet) -> None:
    a = nat.regions[0]
    hub = nat.hub(0)
    zvh = nat.client(a.zvh)
    pid = await zvh.pseudonym(BSN, BIRTH)
    await zvh.register_case("C-5", CASE_THEME, [("S1", pid)], [a.vt])
    await synced(hub)
    # As if the case had been registered before the hub had a [national] section.
    await hub.db.write("t", lambda tx: tx.conn.execute("DELETE FROM index_outbox"))
    assert hub.national_link is not None
    assert await hub.national_link.sync.start() == 1
    assert outbox(nat, 0)[0][:2] == ("open", 1)
    count = await hub.db.write("t", lambda tx: national_store.outbox_reconcile(tx, 0))
    assert count == 0  # nothing more to do
