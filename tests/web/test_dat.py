"""Dat-requests and their answers over real HTTP: purpose binding and the order of
precedence of PROTOCOL §3, partial delivery with `denied`, and idempotent retries.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from gateway.adapters.client import Received
from gateway.clock import SystemClock
from gateway.services import admin
from tests.conftest import Network
from tests.web.helpers import (
    CASE,
    SUBJECT,
    Reply,
    Wire,
    assert_durable,
    assert_ledger_refs,
    assert_ok,
    assert_problem,
    dat_body,
    ledger_size,
    locs,
    open_case,
    query_one,
)

TARGET = "/api/v1/dat-requests"


async def send_dat(
    network: Network,
    wire: Wire,
    sender: str,
    recipients: Sequence[str],
    *,
    exchange_id: str | None = None,
    case_ref: str = CASE,
    subject_ref: str = SUBJECT,
) -> Reply:
    body = await dat_body(
        network.client(sender),
        recipients,
        exchange_id=exchange_id or str(uuid.uuid4()),
        case_ref=case_ref,
        subject_ref=subject_ref,
    )
    return await wire.signed(network.keys[sender], "POST", TARGET, body)


async def inbox_count(network: Network, org: str) -> int:
    """Unacknowledged exchange items (the hub's own notifications not counted)."""
    sql = "SELECT COUNT(*) FROM inbox WHERE org = ? AND acked_ms IS NULL AND kind != 'notification'"
    row = await query_one(network.settings.node.database, sql, org)
    assert row is not None
    return int(row[0])


# -- delivery and `denied` --------------------------------------------------------------------


async def test_dat_request_is_recorded_and_delivered(network: Network, wire: Wire) -> None:
    await open_case(network)
    xid = str(uuid.uuid4())
    reply = await send_dat(network, wire, "zvh-test", ["politie-test", "vt-test"], exchange_id=xid)
    body = assert_ok(reply, 202)
    assert body["exchange_id"] == xid
    assert body["delivered"] == ["politie-test", "vt-test"]
    assert body["denied"] == []
    [ref] = assert_ledger_refs(body, 1)
    leaf = await assert_durable(network.settings.node.database, ref)
    assert leaf.entry_type == "dat-request"
    assert await inbox_count(network, "politie-test") == 1
    assert await inbox_count(network, "vt-test") == 1


async def test_non_participant_recipient_is_denied_and_the_others_served(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    reply = await send_dat(network, wire, "zvh-test", ["politie-test", "ggz-test"])
    body = assert_ok(reply, 202)
    assert body["delivered"] == ["politie-test"]
    assert body["denied"] == [{"org": "ggz-test", "code": "not-a-participant"}]
    own, denial = assert_ledger_refs(body, 2)
    database = network.settings.node.database
    assert (await assert_durable(database, own)).entry_type == "dat-request"
    leaf = await assert_durable(database, denial)
    assert leaf.entry_type == "denied"
    assert leaf.body is not None
    assert (leaf.body["code"], leaf.body["denied_org"]) == ("not-a-participant", "ggz-test")
    assert await inbox_count(network, "politie-test") == 1
    assert await inbox_count(network, "ggz-test") == 0


async def test_incidental_recipient_needs_a_declaration(network: Network, wire: Wire) -> None:
    await open_case(network, participants=("politie-test", "woon-test"))
    reply = await send_dat(network, wire, "zvh-test", ["woon-test", "politie-test"])
    body = assert_ok(reply, 202)
    assert body["delivered"] == ["politie-test"]
    assert body["denied"] == [{"org": "woon-test", "code": "declaration-required"}]
    assert_ledger_refs(body, 2)
    assert await inbox_count(network, "woon-test") == 0


async def test_one_denied_recipient_alone_is_a_403(network: Network, wire: Wire) -> None:
    await open_case(network)
    reply = await send_dat(network, wire, "zvh-test", ["ggz-test"])
    problem = assert_problem(reply, 403, "not-a-participant")
    [ref] = assert_ledger_refs(problem, 1)
    leaf = await assert_durable(network.settings.node.database, ref)
    assert leaf.body is not None
    assert leaf.body["denied_org"] == "ggz-test"


@pytest.mark.parametrize(
    "recipients",
    [["ggz-test", "woon-test"], ["woon-test", "ggz-test"]],
    ids=["ggz-first", "woon-first"],
)
async def test_every_recipient_denied_is_a_403_with_the_first_code_by_precedence(
    network: Network, wire: Wire, recipients: list[str]
) -> None:
    """declaration-required (woon-test) precedes not-a-participant (ggz-test),
    whatever the order of the envelopes; each denial is its own ledger entry."""
    await open_case(network)
    reply = await send_dat(network, wire, "zvh-test", recipients)
    problem = assert_problem(reply, 403, "declaration-required")
    refs = assert_ledger_refs(problem, 2)
    codes = set()
    for ref in refs:
        leaf = await assert_durable(network.settings.node.database, ref)
        assert leaf.body is not None
        codes.add((leaf.body["denied_org"], leaf.body["code"]))
    assert codes == {("ggz-test", "not-a-participant"), ("woon-test", "declaration-required")}


async def test_revoked_recipient_is_not_a_member_first(network: Network, wire: Wire) -> None:
    await open_case(network)
    assert admin.revoke_partner(network.settings, SystemClock(), "vt-test")
    zvh = network.keys["zvh-test"]
    deadline = time.monotonic() + 5.0
    while True:
        listing = assert_ok(await wire.signed(zvh, "GET", "/api/v1/directory"), 200)
        status = {o["org"]: o["status"] for o in listing["organisations"]}
        if status["vt-test"] == "revoked":
            break
        assert time.monotonic() < deadline, "the hub never saw the revocation"
        await asyncio.sleep(0.1)
    reply = await send_dat(network, wire, "zvh-test", ["ggz-test", "woon-test", "vt-test"])
    assert_ledger_refs(assert_problem(reply, 403, "not-a-member"), 3)
    reply = await send_dat(network, wire, "zvh-test", ["vt-test", "politie-test"])
    assert assert_ok(reply, 202)["denied"] == [{"org": "vt-test", "code": "not-a-member"}]


# -- the sender and the case ---------------------------------------------------------------


async def test_non_participant_sender_is_refused(network: Network, wire: Wire) -> None:
    await open_case(network)
    reply = await send_dat(network, wire, "ggz-test", ["politie-test"])
    problem = assert_problem(reply, 403, "not-a-participant")
    [ref] = assert_ledger_refs(problem, 1)
    leaf = await assert_durable(network.settings.node.database, ref)
    assert leaf.body is not None
    assert (leaf.body["org"], leaf.body["action"]) == ("ggz-test", "dat-request")
    assert await inbox_count(network, "politie-test") == 0


async def test_incidental_sender_needs_a_declaration(network: Network, wire: Wire) -> None:
    await open_case(network, participants=("politie-test", "woon-test"))
    reply = await send_dat(network, wire, "woon-test", ["politie-test"])
    assert_ledger_refs(assert_problem(reply, 403, "declaration-required"), 1)
    assert await inbox_count(network, "politie-test") == 0


@pytest.mark.parametrize("sender", ["zvh-test", "ggz-test"])
async def test_unknown_case_is_not_found(network: Network, wire: Wire, sender: str) -> None:
    await open_case(network)
    reply = await send_dat(network, wire, sender, ["politie-test"], case_ref="C-404")
    assert_problem(reply, 404, "not-found")


async def test_subject_not_in_the_case_is_a_400(network: Network, wire: Wire) -> None:
    await open_case(network)
    reply = await send_dat(network, wire, "zvh-test", ["politie-test"], subject_ref="S9")
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["subject_ref"]]


async def test_closed_case_is_a_conflict(network: Network, wire: Wire) -> None:
    await open_case(network)
    await network.client("zvh-test").close_case(CASE)
    reply = await send_dat(network, wire, "zvh-test", ["politie-test"])
    assert_problem(reply, 409, "case-closed")
    assert await inbox_count(network, "politie-test") == 0


async def test_precedence_around_a_closed_case(network: Network, wire: Wire) -> None:
    """not-a-participant (sender) before case-closed before the stored-state 400s."""
    await open_case(network)
    await network.client("zvh-test").close_case(CASE)
    outsider = await send_dat(network, wire, "ggz-test", ["politie-test"])
    assert_problem(outsider, 403, "not-a-participant")
    no_subject = await send_dat(network, wire, "zvh-test", ["politie-test"], subject_ref="S9")
    assert_problem(no_subject, 409, "case-closed")
    all_denied = await send_dat(network, wire, "zvh-test", ["ggz-test"])
    assert_problem(all_denied, 409, "case-closed")


# -- retries ----------------------------------------------------------------------------------


async def test_retry_gets_the_original_response_and_delivers_once(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    body = await dat_body(
        network.client("zvh-test"), ["politie-test", "ggz-test"], exchange_id=str(uuid.uuid4())
    )
    zvh = network.keys["zvh-test"]
    first = await wire.signed(zvh, "POST", TARGET, body)
    original = assert_ok(first, 202)
    size = await ledger_size(network.settings.node.database)
    # Re-signed (a fresh nonce), the same body: a retry, not a replay.
    again = await wire.signed(zvh, "POST", TARGET, body)
    assert assert_ok(again, 202) == original
    assert again.text == first.text
    assert await ledger_size(network.settings.node.database) == size
    messages = await network.client("politie-test").fetch(wait=0)
    assert [m.exchange_id for m in messages] == [original["exchange_id"]]


async def test_same_exchange_id_with_another_body_is_a_conflict(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    xid = str(uuid.uuid4())
    assert_ok(await send_dat(network, wire, "zvh-test", ["politie-test"], exchange_id=xid), 202)
    # Sealed again: new enc/ct, so another body under the same id.
    reply = await send_dat(network, wire, "zvh-test", ["politie-test"], exchange_id=xid)
    assert_problem(reply, 409, "exchange-exists")
    other_recipients = await send_dat(network, wire, "zvh-test", ["vt-test"], exchange_id=xid)
    assert_problem(other_recipients, 409, "exchange-exists")
    assert await inbox_count(network, "politie-test") == 1
    assert await inbox_count(network, "vt-test") == 0


async def test_exchange_ids_are_unique_per_hub(network: Network, wire: Wire) -> None:
    await open_case(network)
    xid = str(uuid.uuid4())
    assert_ok(await send_dat(network, wire, "zvh-test", ["politie-test"], exchange_id=xid), 202)
    reply = await send_dat(network, wire, "politie-test", ["vt-test"], exchange_id=xid)
    assert_problem(reply, 409, "exchange-exists")
    # PROTOCOL §3: 404 (unknown case) before exchange-exists before the sender's 403s.
    unknown = await send_dat(
        network, wire, "politie-test", ["vt-test"], exchange_id=xid, case_ref="C-404"
    )
    assert_problem(unknown, 404, "not-found")
    outsider = await send_dat(network, wire, "ggz-test", ["politie-test"], exchange_id=xid)
    assert_problem(outsider, 409, "exchange-exists")


async def test_retry_after_the_case_closed_still_gets_the_original_response(
    network: Network, wire: Wire
) -> None:
    """The repeated-request check precedes every state check (PROTOCOL §3)."""
    await open_case(network)
    body = await dat_body(
        network.client("zvh-test"), ["politie-test"], exchange_id=str(uuid.uuid4())
    )
    zvh = network.keys["zvh-test"]
    original = assert_ok(await wire.signed(zvh, "POST", TARGET, body), 202)
    await network.client("zvh-test").close_case(CASE)
    assert assert_ok(await wire.signed(zvh, "POST", TARGET, body), 202) == original


async def test_refused_requests_do_not_use_the_exchange_id_up(network: Network, wire: Wire) -> None:
    await open_case(network)
    xid = str(uuid.uuid4())
    refusals = [
        (
            await send_dat(
                network, wire, "zvh-test", ["politie-test"], exchange_id=xid, subject_ref="S9"
            ),
            400,
            "invalid-request",
        ),
        (
            await send_dat(network, wire, "zvh-test", ["ggz-test"], exchange_id=xid),
            403,
            "not-a-participant",
        ),
        (
            await send_dat(
                network, wire, "zvh-test", ["politie-test"], exchange_id=xid, case_ref="C-404"
            ),
            404,
            "not-found",
        ),
        (
            await send_dat(network, wire, "ggz-test", ["politie-test"], exchange_id=xid),
            403,
            "not-a-participant",
        ),
    ]
    for reply, status, code in refusals:
        assert_problem(reply, status, code)
    corrected = await send_dat(network, wire, "zvh-test", ["politie-test"], exchange_id=xid)
    assert assert_ok(corrected, 202)["exchange_id"] == xid


# -- answers -----------------------------------------------------------------------------------


async def delivered_request(network: Network, wire: Wire) -> Received:
    """zvh-test asks politie-test (and ggz-test, who is denied); politie-test's copy."""
    await open_case(network)
    assert_ok(await send_dat(network, wire, "zvh-test", ["politie-test", "ggz-test"]), 202)
    [message] = await network.client("politie-test").fetch(wait=2)
    return message


async def answer_body(
    network: Network,
    request: Received,
    decision: str = "known",
    *,
    to: str = "zvh-test",
    content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    assert request.exchange_id is not None
    envelope = await network.client("politie-test").seal_to(
        to,
        kind="dat-answer",
        exchange_id=request.exchange_id,
        case_ref=request.case_ref,
        subject_ref=request.subject_ref,
        body=content or {"contact": "team Noord"},
    )
    return {"decision": decision, "envelope": envelope}


def answers_target(request: Received) -> str:
    return f"/api/v1/exchanges/{request.exchange_id}/answers"


async def test_answer_reaches_the_requester(network: Network, wire: Wire) -> None:
    request = await delivered_request(network, wire)
    body = await answer_body(network, request)
    reply = await wire.signed(network.keys["politie-test"], "POST", answers_target(request), body)
    response = assert_ok(reply, 202)
    assert response["exchange_id"] == request.exchange_id
    [ref] = assert_ledger_refs(response, 1)
    assert (await assert_durable(network.settings.node.database, ref)).entry_type == "dat-answer"
    answer, match = await network.client("zvh-test").fetch(wait=2)
    assert (answer.kind, answer.decision, answer.sender) == ("dat-answer", "known", "politie-test")
    assert answer.body == {"contact": "team Noord"}
    # A `known` answer is also a dat-match notification: metadata only, from the hub.
    assert (match.kind, match.sender, match.body) == ("notification", "hub-test", None)
    assert match.exchange_id == request.exchange_id
    assert match.notification == {
        "event": "dat-match",
        "case_ref": request.case_ref,
        "holder": "politie-test",
    }


async def test_repeated_answer_gets_the_original_response(network: Network, wire: Wire) -> None:
    request = await delivered_request(network, wire)
    body = await answer_body(network, request)
    police = network.keys["politie-test"]
    first = await wire.signed(police, "POST", answers_target(request), body)
    size = await ledger_size(network.settings.node.database)
    again = await wire.signed(police, "POST", answers_target(request), body)
    assert assert_ok(again, 202) == assert_ok(first, 202)
    assert await ledger_size(network.settings.node.database) == size
    assert await inbox_count(network, "zvh-test") == 1


@pytest.mark.parametrize("change", ["decision", "envelope", "no-envelope"])
async def test_a_different_second_answer_is_a_conflict(
    network: Network, wire: Wire, change: str
) -> None:
    request = await delivered_request(network, wire)
    police = network.keys["politie-test"]
    assert_ok(
        await wire.signed(
            police, "POST", answers_target(request), await answer_body(network, request)
        ),
        202,
    )
    second: dict[str, Any] = {
        "decision": await answer_body(network, request, "not-known"),
        "envelope": await answer_body(network, request, content={"contact": "team Zuid"}),
        "no-envelope": {"decision": "known"},
    }[change]
    reply = await wire.signed(police, "POST", answers_target(request), second)
    assert_problem(reply, 409, "exchange-exists")
    assert await inbox_count(network, "zvh-test") == 1


@pytest.mark.parametrize("org", ["vt-test", "ggz-test", "zvh-test"])
async def test_answer_by_an_organisation_that_was_not_a_recipient_is_not_found(
    network: Network, wire: Wire, org: str
) -> None:
    """vt-test is a participant but was not asked; ggz-test was denied; zvh-test asked."""
    request = await delivered_request(network, wire)
    reply = await wire.signed(
        network.keys[org], "POST", answers_target(request), {"decision": "not-known"}
    )
    assert_problem(reply, 404, "not-found")


async def test_answer_to_an_unknown_exchange_is_not_found(network: Network, wire: Wire) -> None:
    await open_case(network)
    target = f"/api/v1/exchanges/{uuid.uuid4()}/answers"
    reply = await wire.signed(network.keys["politie-test"], "POST", target, {"decision": "known"})
    assert_problem(reply, 404, "not-found")


async def test_dat_request_is_answered_known_or_not_known(network: Network, wire: Wire) -> None:
    request = await delivered_request(network, wire)
    reply = await wire.signed(
        network.keys["politie-test"], "POST", answers_target(request), {"decision": "release"}
    )
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["decision"]]


async def test_answer_envelope_must_go_to_the_requester(network: Network, wire: Wire) -> None:
    request = await delivered_request(network, wire)
    body = await answer_body(network, request, to="vt-test")
    reply = await wire.signed(network.keys["politie-test"], "POST", answers_target(request), body)
    assert ["envelope", "recipient"] in locs(assert_problem(reply, 400, "invalid-request"))
    assert await inbox_count(network, "vt-test") == 0


async def test_answer_envelope_must_name_the_exchange_of_the_path(
    network: Network, wire: Wire
) -> None:
    request = await delivered_request(network, wire)
    body = await answer_body(network, request)
    target = f"/api/v1/exchanges/{uuid.uuid4()}/answers"
    reply = await wire.signed(network.keys["politie-test"], "POST", target, body)
    assert ["envelope", "exchange_id"] in locs(assert_problem(reply, 400, "invalid-request"))


async def test_answer_in_a_closed_case_is_a_conflict(network: Network, wire: Wire) -> None:
    request = await delivered_request(network, wire)
    await network.client("zvh-test").close_case(CASE)
    body = await answer_body(network, request)
    reply = await wire.signed(network.keys["politie-test"], "POST", answers_target(request), body)
    assert_problem(reply, 409, "case-closed")
