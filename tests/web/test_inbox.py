"""The store-and-forward inbox over real HTTP (PROTOCOL §7): long-poll wake-ups,
redelivery of unacknowledged messages after the visibility timeout, and acks.

Redelivery tests run on a hub of their own whose visibility timeout is 0.5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters.client import HubClient
from gateway.services.inbox import message_json, messages_body
from gateway.storage.records import InboxMessage
from tests.conftest import BSN, NAME, Network
from tests.web.conftest import RunningHub
from tests.web.helpers import (
    CASE,
    SUBJECT,
    Wire,
    assert_ok,
    assert_problem,
    open_case,
)

LEASE_S = 0.5
PAST_LEASE_S = LEASE_S + 0.3


async def ask(net: Network, *recipients: str) -> str:
    """A dat-request from zvh-test; returns its exchange id."""
    sent = await net.client("zvh-test").dat_request(
        CASE, SUBJECT, list(recipients), {"bsn": BSN, "name": NAME}
    )
    exchange_id = sent["exchange_id"]
    assert isinstance(exchange_id, str)
    return exchange_id


async def poll(wire: Wire, net: Network, org: str, query: str = "wait=0") -> list[dict[str, Any]]:
    reply = await wire.signed(net.keys[org], "GET", f"/api/v1/inbox?{query}")
    messages = assert_ok(reply, 200)["messages"]
    assert isinstance(messages, list)
    return messages


async def ack(wire: Wire, net: Network, org: str, message_id: int) -> Any:
    return await wire.signed(net.keys[org], "POST", f"/api/v1/inbox/{message_id}/ack", {})


# -- long poll ------------------------------------------------------------------------------


async def test_long_poll_returns_promptly_when_a_message_arrives(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    waiting = asyncio.create_task(poll(wire, network, "politie-test", "wait=5"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    exchange_id = await ask(network, "politie-test")
    posted = time.monotonic()
    messages = await asyncio.wait_for(waiting, timeout=5)
    assert time.monotonic() - posted < 1.0
    assert [m["exchange_id"] for m in messages] == [exchange_id]


async def test_long_poll_is_not_woken_by_another_orgs_message(network: Network, wire: Wire) -> None:
    await open_case(network)
    start = time.monotonic()
    waiting = asyncio.create_task(poll(wire, network, "politie-test", "wait=1"))
    await asyncio.sleep(0.2)
    await ask(network, "vt-test")
    assert await waiting == []
    assert time.monotonic() - start >= 0.9


async def test_message_carries_the_labels_and_the_envelope_as_sent(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    zvh = network.client("zvh-test")
    envelope = await zvh.seal_to(
        "politie-test",
        kind="dat-request",
        exchange_id="6f1c2a4e-0b7d-4c55-9a63-1d2e3f405162",
        case_ref=CASE,
        subject_ref=SUBJECT,
        body={"bsn": BSN},
    )
    body = {"case_ref": CASE, "subject_ref": SUBJECT, "envelopes": [envelope]}
    assert_ok(
        await wire.signed(network.keys["zvh-test"], "POST", "/api/v1/dat-requests", body), 202
    )
    [message] = await poll(wire, network, "politie-test")
    assert isinstance(message.pop("message_id"), int)
    assert message == {
        "kind": "dat-request",
        "exchange_id": envelope["exchange_id"],
        "from": "zvh-test",
        "case_ref": CASE,
        "subject_ref": SUBJECT,
        "envelope": envelope,
    }


# -- visibility and acks -----------------------------------------------------------------------


async def test_unacked_message_is_redelivered_after_the_visibility_timeout(
    short_lease: RunningHub,
) -> None:
    net, wire = short_lease.net, short_lease.wire
    await open_case(net)
    await ask(net, "politie-test")
    [first] = await poll(wire, net, "politie-test")
    assert await poll(wire, net, "politie-test") == []  # leased: hidden for now
    await asyncio.sleep(PAST_LEASE_S)
    [again] = await poll(wire, net, "politie-test")
    assert again == first


async def test_acked_message_is_never_redelivered(short_lease: RunningHub) -> None:
    net, wire = short_lease.net, short_lease.wire
    await open_case(net)
    await ask(net, "politie-test")
    [message] = await poll(wire, net, "politie-test")
    assert assert_ok(await ack(wire, net, "politie-test", message["message_id"]), 200) == {
        "acked": [message["message_id"]]
    }
    await asyncio.sleep(PAST_LEASE_S)
    assert await poll(wire, net, "politie-test") == []
    assert await poll(wire, net, "politie-test", "wait=1") == []


async def test_ack_after_the_lease_expired_still_counts(short_lease: RunningHub) -> None:
    net, wire = short_lease.net, short_lease.wire
    await open_case(net)
    await ask(net, "politie-test")
    [message] = await poll(wire, net, "politie-test")
    await asyncio.sleep(PAST_LEASE_S)
    assert_ok(await ack(wire, net, "politie-test", message["message_id"]), 200)
    assert await poll(wire, net, "politie-test") == []


async def test_batch_ack(short_lease: RunningHub) -> None:
    net, wire = short_lease.net, short_lease.wire
    await open_case(net)
    await ask(net, "politie-test")
    await ask(net, "politie-test")
    messages = await poll(wire, net, "politie-test")
    ids = [m["message_id"] for m in messages]
    assert len(ids) == 2
    reply = await wire.signed(
        net.keys["politie-test"], "POST", "/api/v1/inbox/ack", {"message_ids": ids}
    )
    assert sorted(assert_ok(reply, 200)["acked"]) == sorted(ids)
    await asyncio.sleep(PAST_LEASE_S)
    assert await poll(wire, net, "politie-test") == []


async def test_batch_ack_skips_other_organisations_messages(short_lease: RunningHub) -> None:
    net, wire = short_lease.net, short_lease.wire
    await open_case(net)
    await ask(net, "politie-test", "vt-test")
    [mine] = await poll(wire, net, "politie-test")
    [theirs] = await poll(wire, net, "vt-test")
    ids = [mine["message_id"], theirs["message_id"]]
    reply = await wire.signed(
        net.keys["politie-test"], "POST", "/api/v1/inbox/ack", {"message_ids": ids}
    )
    assert assert_ok(reply, 200)["acked"] == [mine["message_id"]]
    await asyncio.sleep(PAST_LEASE_S)
    assert await poll(wire, net, "vt-test") == [theirs]
    assert await poll(wire, net, "politie-test") == []


async def test_acking_another_organisations_message_is_not_found(
    short_lease: RunningHub,
) -> None:
    net, wire = short_lease.net, short_lease.wire
    await open_case(net)
    await ask(net, "politie-test")
    [message] = await poll(wire, net, "politie-test")
    assert_problem(await ack(wire, net, "vt-test", message["message_id"]), 404, "not-found")
    await asyncio.sleep(PAST_LEASE_S)
    assert await poll(wire, net, "politie-test") == [message]


async def test_acking_an_unknown_message_is_not_found(network: Network, wire: Wire) -> None:
    assert_problem(await ack(wire, network, "politie-test", 999_999), 404, "not-found")


async def test_limit_leaves_the_rest_for_the_next_fetch(network: Network, wire: Wire) -> None:
    net = network  # the default 30 s lease: the first message stays hidden meanwhile
    await open_case(net)
    first_id = await ask(net, "politie-test")
    second_id = await ask(net, "politie-test")
    [first] = await poll(wire, net, "politie-test", "wait=0&limit=1")
    [second] = await poll(wire, net, "politie-test", "wait=0&limit=1")
    assert [first["exchange_id"], second["exchange_id"]] == [first_id, second_id]
    assert await poll(wire, net, "politie-test", "wait=0&limit=1") == []


async def test_a_poll_whose_client_went_away_leases_nothing(network: Network, wire: Wire) -> None:
    """aiohttp does not cancel a handler when its client disconnects: the orphaned
    long-poll must not lease the message it wakes up for, or the next poll would see
    nothing until the visibility timeout ran out."""
    await open_case(network)
    session = aiohttp.ClientSession()
    gone = HubClient(network.url, network.keys["politie-test"], session=session)
    waiting = asyncio.create_task(gone.fetch(wait=10))
    await asyncio.sleep(0.3)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await session.close()
    await asyncio.sleep(0.1)
    exchange_id = await ask(network, "politie-test")
    await asyncio.sleep(0.3)  # the orphaned poll wakes up meanwhile
    assert [m["exchange_id"] for m in await poll(wire, network, "politie-test")] == [exchange_id]


_ENVELOPE = {
    "v": 1,
    "suite": "x",
    "kind": "dat-request",
    "sender": "zvh-test",
    "ct": 'q"\\é',
}


@given(
    st.text(max_size=8),
    st.sampled_from([None, "known"]),
    st.sampled_from(
        [
            None,
            json.dumps(_ENVELOPE, separators=(",", ":")),
            # as pydantic's model_dump_json writes it: UTF-8, not \\u escapes
            json.dumps(_ENVELOPE, separators=(",", ":"), ensure_ascii=False),
            json.dumps({"envelope": _ENVELOPE, "legal_basis": {"gdpr": "6(1)(e)"}}),
            json.dumps({"envelope": None, "notification": {"event": "case-closed"}}),
        ]
    ),
)
def test_a_fetch_body_is_the_messages_as_json(
    case_ref: str, decision: str | None, envelope: str | None
) -> None:
    """The stored envelope spliced in as it is reads back as the JSON `message_json`
    gives, whatever the other fields hold."""
    messages = [
        InboxMessage(
            i,
            "politie-test",
            "dat-request",
            "x-1",
            "zvh-test",
            case_ref,
            "S1",
            decision,
            None,
            envelope,
            0,
        )
        for i in (1, 2)
    ]
    assert json.loads(messages_body(messages)) == {"messages": [message_json(m) for m in messages]}
    assert json.loads(messages_body([])) == {"messages": []}
