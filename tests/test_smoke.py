"""The dat round trip through a real hub, in one process."""

from __future__ import annotations

from tests.conftest import BSN, NAME, Network, synthetic_pid


async def test_dat_round_trip(network: Network) -> None:
    zvh = network.client("zvh-test")
    police = network.client("politie-test")
    res = await zvh.register_case(
        "C-1", "huiselijk-geweld", [("S1", synthetic_pid())], ["politie-test", "vt-test"]
    )
    assert res["status"] == "open"
    sent = await zvh.dat_request("C-1", "S1", ["politie-test"], {"bsn": BSN, "name": NAME})
    assert sent["delivered"] == ["politie-test"]
    [msg] = await police.fetch(wait=2)
    assert msg.body == {"bsn": BSN, "name": NAME}
    await police.answer(msg, "known", {"contact": "team Noord"})
    await police.ack([msg.message_id])
    answer, match = await zvh.fetch(wait=2)
    assert answer.decision == "known"
    assert answer.body == {"contact": "team Noord"}
    # ... and, because it is a `known`, a dat-match notification from the hub.
    assert match.kind == "notification"
    assert match.notification is not None
    assert match.notification["event"] == "dat-match"
