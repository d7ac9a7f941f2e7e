"""Inbox notifications (issue #8; docs/protocol.md): a case closed, a participant
added, a dat match, a declaration about to expire. Metadata only: no envelope, no
names or pids, from the hub itself, queued with the step that caused them."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.adapters.client import Received
from tests.conftest import Network, synthetic_pid
from tests.web.conftest import run_hub
from tests.web.helpers import CASE, THEME, open_case, query_one

DAY_MS = 86_400_000


async def notifications(network: Network, org: str) -> list[Received]:
    got = await network.client(org).fetch()
    assert all(m.error is None for m in got)
    return [m for m in got if m.kind == "notification"]


def assert_metadata_only(msg: Received) -> None:
    assert msg.sender == "hub-test"
    assert msg.body is None
    assert msg.notification is not None
    assert set(msg.notification) <= {
        "event",
        "case_ref",
        "org",
        "holder",
        "closed_ms",
        "valid_until_ms",
    }


async def test_closing_a_case_tells_the_participants(network: Network) -> None:
    await open_case(network, participants=("politie-test", "vt-test"))
    await network.client("zvh-test").close_case(CASE)
    for org in ("politie-test", "vt-test"):
        (msg,) = await notifications(network, org)
        assert_metadata_only(msg)
        assert msg.notification is not None
        assert msg.notification["event"] == "case-closed"
        assert msg.case_ref == msg.notification["case_ref"] == CASE
    # The ZVH closed it itself; outsiders to the case hear nothing.
    assert await notifications(network, "zvh-test") == []
    assert await notifications(network, "ggz-test") == []
    # Closing again is a retry: no second notification.
    await network.client("zvh-test").close_case(CASE)
    row = await query_one(
        network.settings.node.database,
        "SELECT COUNT(*) FROM inbox WHERE kind = 'notification' AND org = 'vt-test'",
    )
    assert row == (1,)


async def test_a_new_participant_is_announced(network: Network) -> None:
    await open_case(network, participants=("politie-test",))
    await network.client("zvh-test").add_participant(CASE, "ggz-test")
    for org in ("politie-test", "ggz-test"):
        (msg,) = await notifications(network, org)
        assert_metadata_only(msg)
        assert msg.notification == {
            "event": "participant-added",
            "case_ref": CASE,
            "org": "ggz-test",
        }
    assert await notifications(network, "zvh-test") == []
    assert await notifications(network, "vt-test") == []


async def test_a_declaration_about_to_expire_is_announced_once(network: Network) -> None:
    zvh = network.client("zvh-test")
    await zvh.register_case(CASE, THEME, [("S1", synthetic_pid())], ["woon-test"])
    woon = network.client("woon-test")
    now = network.hub.clock.now_ms()
    await woon.declare(
        CASE,
        signer_name="J. Jansen",
        signer_role="wijkbeheerder",
        valid_from_ms=now - 1000,
        valid_until_ms=now + 3 * DAY_MS,
    )
    hub = network.hub
    # Outside the window: nothing yet.
    assert await hub.notifier.declarations_expiring(hub.db, now_ms=now, window_days=2) == 0
    assert await hub.notifier.declarations_expiring(hub.db, now_ms=now, window_days=7) == 1
    (msg,) = await notifications(network, "woon-test")
    assert_metadata_only(msg)
    assert msg.notification == {
        "event": "declaration-expiring",
        "case_ref": CASE,
        "valid_until_ms": now + 3 * DAY_MS,
    }
    assert "Jansen" not in json.dumps(msg.notification)
    # Once per declaration.
    assert await hub.notifier.declarations_expiring(hub.db, now_ms=now, window_days=7) == 0
    # A newer declaration that runs longer: its predecessor's end needs no warning.
    await woon.declare(
        CASE,
        signer_name="J. Jansen",
        signer_role="wijkbeheerder",
        valid_from_ms=now - 500,
        valid_until_ms=now + 60 * DAY_MS,
    )
    assert await hub.notifier.declarations_expiring(hub.db, now_ms=now, window_days=7) == 0


async def test_the_hub_sends_declaration_notices_on_its_own(tmp_path: Path) -> None:
    """The periodic task (every `messages.sweep_interval_s`) finds the declaration."""
    async with run_hub(tmp_path, messages={"sweep_interval_s": 0.2}) as running:
        net = running.net
        await net.client("zvh-test").register_case(
            CASE, THEME, [("S1", synthetic_pid())], ["woon-test"]
        )
        woon = net.client("woon-test")
        now = net.hub.clock.now_ms()
        await woon.declare(
            CASE,
            signer_name="J. Jansen",
            signer_role="wijkbeheerder",
            valid_from_ms=now - 1000,
            valid_until_ms=now + DAY_MS,
        )
        got: list[Received] = []
        for _ in range(10):
            got += [m for m in await woon.fetch(wait=1) if m.kind == "notification"]
            if got:
                break
        (msg,) = got
        assert msg.notification is not None
        assert msg.notification["event"] == "declaration-expiring"
