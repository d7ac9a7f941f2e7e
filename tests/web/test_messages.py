"""Secure case messages and referrals at the hub (issue #8; docs/protocol.md,
"Decisions and extensions"): delivery to participants only, the dat-request's
membership and declaration checks, idempotency on exchange_id, 400s for envelopes
that do not match, and ledger entries that hold hashes, never content."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.adapters.attachments import seal_each
from gateway.adapters.client import HubClient, HubError
from gateway.crypto.envelope import payload_hash
from tests.conftest import Network, accede_all
from tests.web.helpers import (
    CASE,
    SUBJECT,
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

TARGET = "/api/v1/messages"
SECRET = "Vader dreigde gisteren opnieuw; school meldt verzuim sinds maandag."


async def message_body(
    sender: HubClient,
    recipients: list[str],
    *,
    exchange_id: str,
    case_ref: str = CASE,
    subject_ref: str = SUBJECT,
    blobs: list[str] | None = None,
    text: str = SECRET,
) -> dict[str, Any]:
    envelopes = await seal_each(
        sender,
        recipients,
        kind="message",
        exchange_id=exchange_id,
        case_ref=case_ref,
        subject_ref=subject_ref,
        body={"text": text, "attachments": []},
    )
    return {
        "case_ref": case_ref,
        "subject_ref": subject_ref,
        "envelopes": envelopes,
        "blobs": blobs or [],
    }


async def all_files_text(net: Network) -> bytes:
    """Every byte of the hub's database files (main, WAL)."""
    db = net.settings.node.database
    out = b""
    for p in (db, db.with_name(db.name + "-wal")):
        if p.exists():
            out += p.read_bytes()
    return out


async def test_message_delivered_opened_and_recorded_without_content(network: Network) -> None:
    await open_case(network, participants=("politie-test", "vt-test"))
    police = network.client("politie-test")
    sent = await police.send_message(
        CASE, ["vt-test", "zvh-test"], {"text": SECRET}, subject_ref=SUBJECT
    )
    assert sent["delivered"] == ["vt-test", "zvh-test"]
    assert sent["denied"] == []
    (ref,) = assert_ledger_refs(sent, 1)
    leaf = await assert_durable(network.settings.node.database, ref)
    assert leaf.entry_type == "message"
    assert leaf.body is not None
    assert leaf.body["sender"] == "politie-test"
    assert leaf.body["recipients"] == ["vt-test", "zvh-test"]
    assert set(leaf.body["payload_sha256"]) == {"vt-test", "zvh-test"}
    assert leaf.body["blobs"] == []
    assert SECRET not in json.dumps(leaf.body)

    for org in ("vt-test", "zvh-test"):
        got = [m for m in await network.client(org).fetch() if m.kind == "message"]
        assert len(got) == 1
        msg = got[0]
        assert msg.error is None
        assert msg.sender == "politie-test"
        assert msg.case_ref == CASE
        assert msg.subject_ref == SUBJECT
        assert msg.exchange_id == sent["exchange_id"]
        assert msg.body == {"text": SECRET, "attachments": []}
    # The hashes in the ledger are those of the envelopes delivered.
    row = await query_one(
        network.settings.node.database,
        "SELECT envelope FROM inbox WHERE org = 'vt-test' AND kind = 'message'",
    )
    assert row is not None
    stored = json.loads(row[0])
    assert payload_hash(stored["envelope"]).hex() == leaf.body["payload_sha256"]["vt-test"]
    assert SECRET.encode() not in await all_files_text(network)


async def test_message_without_subject(network: Network) -> None:
    await open_case(network)
    sent = await network.client("vt-test").send_message(CASE, ["politie-test"], {"text": "hoi"})
    assert sent["delivered"] == ["politie-test"]
    (msg,) = await network.client("politie-test").fetch()
    assert msg.subject_ref == ""
    assert msg.body == {"text": "hoi", "attachments": []}


async def test_non_participant_recipient_denied_others_delivered(network: Network) -> None:
    await open_case(network, participants=("politie-test", "vt-test"))
    sent = await network.client("politie-test").send_message(
        CASE, ["vt-test", "ggz-test"], {"text": "x"}
    )
    assert sent["delivered"] == ["vt-test"]
    assert sent["denied"] == [{"org": "ggz-test", "code": "not-a-participant"}]
    refs = assert_ledger_refs(sent, 2)
    denial = await assert_durable(network.settings.node.database, refs[1])
    assert denial.entry_type == "denied"
    assert await network.client("ggz-test").fetch() == []


async def test_every_recipient_denied_is_403(network: Network, wire: Wire) -> None:
    await open_case(network, participants=("politie-test", "vt-test"))
    police = network.client("politie-test")
    body = await message_body(police, ["ggz-test"], exchange_id=str(uuid.uuid4()))
    reply = await wire.signed(network.keys["politie-test"], "POST", "/api/v1/messages", body)
    problem = assert_problem(reply, 403, "not-a-participant")
    assert_ledger_refs(problem, 1)


async def test_sender_not_a_participant_is_403(network: Network, wire: Wire) -> None:
    await open_case(network, participants=("politie-test", "vt-test"))
    ggz = network.client("ggz-test")
    body = await message_body(ggz, ["vt-test"], exchange_id=str(uuid.uuid4()))
    reply = await wire.signed(network.keys["ggz-test"], "POST", "/api/v1/messages", body)
    assert_ledger_refs(assert_problem(reply, 403, "not-a-participant"), 1)


async def test_incidental_needs_a_declaration(network: Network) -> None:
    await open_case(network, participants=("politie-test", "woon-test"))
    police = network.client("politie-test")
    with pytest.raises(HubError) as caught:
        await police.send_message(CASE, ["woon-test"], {"text": "x"})
    assert caught.value.status == 403
    assert caught.value.code == "declaration-required"
    assert await network.client("woon-test").fetch() == []


# -- idempotency and 400s -----------------------------------------------------------------


async def test_repeat_is_idempotent_and_a_changed_body_conflicts(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    police = network.client("politie-test")
    xid = str(uuid.uuid4())
    body = await message_body(police, ["vt-test"], exchange_id=xid)
    keys = network.keys["politie-test"]
    first = assert_ok(await wire.signed(keys, "POST", TARGET, body), 202)
    size = await ledger_size(network.settings.node.database)
    again = assert_ok(await wire.signed(keys, "POST", TARGET, body), 202)
    assert again == first
    assert await ledger_size(network.settings.node.database) == size
    assert len(await network.client("vt-test").fetch()) == 1
    changed = await message_body(police, ["vt-test"], exchange_id=xid, text="anders")
    assert_problem(await wire.signed(keys, "POST", TARGET, changed), 409, "exchange-exists")
    # Exchange ids are unique across dat-requests and messages.
    dat = await dat_body(police, ["vt-test"], exchange_id=xid)
    assert_problem(
        await wire.signed(keys, "POST", "/api/v1/dat-requests", dat), 409, "exchange-exists"
    )


async def test_envelopes_that_do_not_match_are_400(network: Network, wire: Wire) -> None:
    await open_case(network)
    police = network.client("politie-test")
    keys = network.keys["politie-test"]
    xid = str(uuid.uuid4())
    size = await ledger_size(network.settings.node.database)

    wrong_kind = await dat_body(police, ["vt-test"], exchange_id=xid)
    reply = await wire.signed(keys, "POST", TARGET, {**wrong_kind, "blobs": []})
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["envelopes", 0, "kind"]]

    other_case = await message_body(police, ["vt-test"], exchange_id=xid, case_ref="C-2")
    reply = await wire.signed(keys, "POST", TARGET, {**other_case, "case_ref": CASE})
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["envelopes", 0, "case_ref"]]

    body = await message_body(police, ["vt-test"], exchange_id=xid)
    forged = {**body["envelopes"][0], "ct": body["envelopes"][0]["ct"][:-4] + "AAAA"}
    reply = await wire.signed(keys, "POST", TARGET, {**body, "envelopes": [forged]})
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["envelopes", 0, "sig"]]

    reply = await wire.signed(keys, "POST", TARGET, {**body, "blobs": ["nothex"]})
    assert_problem(reply, 400, "invalid-request")
    reply = await wire.signed(keys, "POST", TARGET, {**body, "extra": 1})
    assert_problem(reply, 400, "invalid-request")

    unknown_subject = await message_body(
        police, ["vt-test"], exchange_id=xid, subject_ref="S-unknown"
    )
    reply = await wire.signed(keys, "POST", TARGET, unknown_subject)
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["subject_ref"]]

    to_self = await message_body(police, ["politie-test"], exchange_id=xid)
    assert_problem(await wire.signed(keys, "POST", TARGET, to_self), 400, "invalid-request")
    # Nothing was recorded or delivered, and the exchange id is still free.
    assert await ledger_size(network.settings.node.database) == size
    assert await network.client("vt-test").fetch() == []
    assert_ok(await wire.signed(keys, "POST", TARGET, body), 202)


async def test_unknown_and_closed_cases(network: Network, wire: Wire) -> None:
    await open_case(network)
    police = network.client("politie-test")
    keys = network.keys["politie-test"]
    unknown = await message_body(police, ["vt-test"], exchange_id=str(uuid.uuid4()), case_ref="C-9")
    assert_problem(await wire.signed(keys, "POST", TARGET, unknown), 404, "not-found")
    await network.client("zvh-test").close_case(CASE)
    body = await message_body(police, ["vt-test"], exchange_id=str(uuid.uuid4()))
    assert_problem(await wire.signed(keys, "POST", TARGET, body), 409, "case-closed")


@pytest.fixture
async def wire_bare(bare_network: Network) -> AsyncIterator[Wire]:
    w = Wire(bare_network.url, bare_network.settings.authority)
    try:
        yield w
    finally:
        await w.close()


async def test_non_member_sender_is_403(bare_network: Network, wire_bare: Wire) -> None:
    await accede_all(bare_network, ("zvh-test", "vt-test"))
    await open_case(bare_network)
    police = bare_network.client("politie-test")  # registered, but no accession signed
    body = await message_body(police, ["vt-test"], exchange_id=str(uuid.uuid4()))
    reply = await wire_bare.signed(bare_network.keys["politie-test"], "POST", TARGET, body)
    assert_ledger_refs(assert_problem(reply, 403, "not-a-member"), 1)


# -- referrals ---------------------------------------------------------------------------


REFERRAL = {
    "person": {"name": "Barend Testmans", "bsn": "230857103", "birth_date": "1980-02-03"},
    "reason": "Zorgen over escalatie thuis",
}


async def test_referral_reaches_the_zvh(network: Network) -> None:
    vt = network.client("vt-test")
    sent = await vt.send_referral(REFERRAL)
    assert sent["delivered"] == ["zvh-test"]
    (ref,) = assert_ledger_refs(sent, 1)
    leaf = await assert_durable(network.settings.node.database, ref)
    assert leaf.entry_type == "referral"
    assert leaf.body is not None
    assert (leaf.body["sender"], leaf.body["recipient"]) == ("vt-test", "zvh-test")
    assert "case_ref" not in leaf.body
    assert "Testmans" not in json.dumps(leaf.body)
    (msg,) = await network.client("zvh-test").fetch()
    assert (msg.kind, msg.sender, msg.case_ref, msg.subject_ref) == ("referral", "vt-test", "", "")
    assert msg.body == {**REFERRAL, "attachments": []}
    assert b"Testmans" not in await all_files_text(network)


async def test_referral_idempotent_and_checked(network: Network, wire: Wire) -> None:
    vt = network.client("vt-test")
    keys = network.keys["vt-test"]
    xid = str(uuid.uuid4())
    env = await vt.seal_to(
        "zvh-test", kind="referral", exchange_id=xid, case_ref="", subject_ref="", body=REFERRAL
    )
    body = {"envelope": env, "blobs": []}
    first = assert_ok(await wire.signed(keys, "POST", "/api/v1/referrals", body), 202)
    again = assert_ok(await wire.signed(keys, "POST", "/api/v1/referrals", body), 202)
    assert again == first
    # The same exchange id with another envelope (sealed afresh) is another body.
    with pytest.raises(HubError) as caught:
        await vt.send_referral(REFERRAL, exchange_id=xid)
    assert caught.value.code == "exchange-exists"
    assert len(await network.client("zvh-test").fetch()) == 1
    # To someone who is not the region's ZVH organisation: 400.
    other = str(uuid.uuid4())
    env = await vt.seal_to(
        "politie-test", kind="referral", exchange_id=other, case_ref="", subject_ref="", body={}
    )
    reply = await wire.signed(keys, "POST", "/api/v1/referrals", {"envelope": env})
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["envelope", "recipient"]]
    # With a case_ref: 400 (a referral concerns no registered case yet).
    env = await vt.seal_to(
        "zvh-test", kind="referral", exchange_id=other, case_ref=CASE, subject_ref="", body={}
    )
    reply = await wire.signed(keys, "POST", "/api/v1/referrals", {"envelope": env})
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["envelope", "case_ref"]]


async def test_incidental_and_non_members_may_not_refer(bare_network: Network) -> None:
    await accede_all(bare_network, ("zvh-test",))
    for org, code in (("woon-test", "forbidden-role"), ("politie-test", "not-a-member")):
        with pytest.raises(HubError) as caught:
            await bare_network.client(org).send_referral(REFERRAL)
        assert caught.value.status == 403
        assert caught.value.code == code
        assert_ledger_refs(caught.value.problem, 1)
    assert await bare_network.client("zvh-test").fetch() == []
