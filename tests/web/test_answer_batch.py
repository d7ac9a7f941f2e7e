"""`POST /api/v1/answers` (extension): several answers in one signed request, a result
per answer, each exactly as the single-answer endpoint would have decided it."""

from __future__ import annotations

import uuid

import pytest

from gateway.adapters.client import Reply as ClientReply
from gateway.crypto.encoding import b64u_decode, b64u_encode
from tests.conftest import Network
from tests.web.helpers import (
    Wire,
    assert_durable,
    assert_ledger_refs,
    assert_ok,
    assert_problem,
    ledger_size,
    locs,
    open_case,
    query_one,
    verifier_calls,
)
from tests.web.test_dat import answer_body, answers_target, delivered_request, send_dat

TARGET = "/api/v1/answers"


async def test_each_answer_gets_its_own_result(network: Network, wire: Wire) -> None:
    request = await delivered_request(network, wire)
    good = {"exchange_id": request.exchange_id, **await answer_body(network, request)}
    unknown = {"exchange_id": str(uuid.uuid4()), "decision": "known"}
    nonces = await query_one(network.settings.node.database, "SELECT COUNT(*) FROM nonces")
    reply = await wire.signed(
        network.keys["politie-test"], "POST", TARGET, {"answers": [unknown, good]}
    )
    # The first answer failed, so its job did not keep the nonce: the request's nonce
    # is durable all the same (a replay after a restart is refused).
    after = await query_one(network.settings.node.database, "SELECT COUNT(*) FROM nonces")
    assert nonces is not None
    assert after is not None
    assert after[0] == nonces[0] + 1
    missing, accepted = assert_ok(reply, 200)["results"]
    assert missing["exchange_id"] == unknown["exchange_id"]
    assert missing["status"] == 404
    assert missing["problem"]["code"] == "not-found"
    assert missing["problem"]["type"].endswith(":not-found")
    assert (accepted["exchange_id"], accepted["status"]) == (request.exchange_id, 202)
    [ref] = assert_ledger_refs(accepted, 1)
    assert (await assert_durable(network.settings.node.database, ref)).entry_type == "dat-answer"
    answer, _match = await network.client("zvh-test").fetch(wait=2)
    assert (answer.kind, answer.sender, answer.body) == (
        "dat-answer",
        "politie-test",
        {"contact": "team Noord"},
    )


async def test_a_batch_retry_of_a_single_answer_gets_the_original_response(
    network: Network, wire: Wire
) -> None:
    request = await delivered_request(network, wire)
    body = await answer_body(network, request)
    police = network.keys["politie-test"]
    first = assert_ok(await wire.signed(police, "POST", answers_target(request), body), 202)
    size = await ledger_size(network.settings.node.database)
    reply = await wire.signed(
        police, "POST", TARGET, {"answers": [{"exchange_id": request.exchange_id, **body}]}
    )
    [again] = assert_ok(reply, 200)["results"]
    assert again == {"status": 202, **first}
    assert await ledger_size(network.settings.node.database) == size


async def test_another_answer_in_a_batch_is_a_conflict_for_that_item(
    network: Network, wire: Wire
) -> None:
    request = await delivered_request(network, wire)
    police = network.keys["politie-test"]
    body = await answer_body(network, request)
    assert_ok(await wire.signed(police, "POST", answers_target(request), body), 202)
    second = {"exchange_id": request.exchange_id, "decision": "not-known"}
    [result] = assert_ok(await wire.signed(police, "POST", TARGET, {"answers": [second]}), 200)[
        "results"
    ]
    assert (result["status"], result["problem"]["code"]) == (409, "exchange-exists")


async def test_one_exchange_twice_in_a_batch_is_a_400(network: Network, wire: Wire) -> None:
    request = await delivered_request(network, wire)
    item = {"exchange_id": request.exchange_id, "decision": "known"}
    size = await ledger_size(network.settings.node.database)
    reply = await wire.signed(network.keys["politie-test"], "POST", TARGET, {"answers": [item] * 2})
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["answers"]]
    assert await ledger_size(network.settings.node.database) == size


async def test_an_invalid_item_fails_the_whole_batch(network: Network, wire: Wire) -> None:
    request = await delivered_request(network, wire)
    items = [
        {"exchange_id": request.exchange_id, "decision": "known"},
        {"exchange_id": str(uuid.uuid4()), "decision": "maybe"},
    ]
    size = await ledger_size(network.settings.node.database)
    reply = await wire.signed(network.keys["politie-test"], "POST", TARGET, {"answers": items})
    assert ["answers", 1, "decision"] in locs(assert_problem(reply, 400, "invalid-request"))
    assert await ledger_size(network.settings.node.database) == size
    reply = await wire.signed(network.keys["politie-test"], "POST", TARGET, {"answers": []})
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["answers"]]


async def test_the_client_answers_many_requests_at_once(network: Network, wire: Wire) -> None:
    await open_case(network)
    for _ in range(3):
        assert_ok(await send_dat(network, wire, "zvh-test", ["politie-test"]), 202)
    police = network.client("politie-test")
    requests = await police.fetch(wait=2)
    assert len(requests) == 3
    results = await police.answer_many(
        [ClientReply(r, "known", {"contact": f"team {i}"}) for i, r in enumerate(requests)]
    )
    assert [r["status"] for r in results] == [202, 202, 202]
    assert [r["exchange_id"] for r in results] == [r.exchange_id for r in requests]
    answers = await network.client("zvh-test").fetch(wait=2)
    assert sorted(str(a.body["contact"]) for a in answers if a.body) == [
        "team 0",
        "team 1",
        "team 2",
    ]


async def test_two_known_answers_make_one_dat_match(network: Network, wire: Wire) -> None:
    await open_case(network)
    assert_ok(await send_dat(network, wire, "zvh-test", ["politie-test", "vt-test"]), 202)
    for org in ("politie-test", "vt-test"):
        client = network.client(org)
        [request] = await client.fetch(wait=2)
        [result] = await client.answer_many([ClientReply(request, "known")])
        assert result["status"] == 202
    received = await network.client("zvh-test").fetch(wait=2)
    kinds = sorted(m.kind for m in received)
    assert kinds == ["dat-answer", "dat-answer", "notification"]
    [match] = [m for m in received if m.kind == "notification"]
    assert match.notification is not None
    assert (match.notification["event"], match.notification["holder"]) == (
        "dat-match",
        "politie-test",
    )


async def test_a_batch_verifies_its_envelopes_in_one_call_and_reports_a_bad_one_alone(
    network: Network, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One hand-over to the verifier for the whole batch; a tampered envelope is still
    that answer's 400 at envelope.sig, and the others go through."""
    await open_case(network)
    for _ in range(2):
        assert_ok(await send_dat(network, wire, "zvh-test", ["politie-test"]), 202)
    first, second = await network.client("politie-test").fetch(wait=2)
    good = {"exchange_id": first.exchange_id, **await answer_body(network, first)}
    bad = {"exchange_id": second.exchange_id, **await answer_body(network, second)}
    sig = bytearray(b64u_decode(bad["envelope"]["sig"]))
    sig[5] ^= 0x01
    bad["envelope"]["sig"] = b64u_encode(bytes(sig))
    calls = verifier_calls(network, monkeypatch)
    reply = await wire.signed(
        network.keys["politie-test"], "POST", TARGET, {"answers": [good, bad]}
    )
    accepted, refused = assert_ok(reply, 200)["results"]
    assert accepted["status"] == 202
    assert refused["status"] == 400
    assert refused["problem"]["errors"][0]["loc"] == ["envelope", "sig"]
    # The request's signature, the batch's two envelopes, and the bad one once more
    # on its own (to report it, as the single endpoint would).
    assert calls == [1, 2, 1]
