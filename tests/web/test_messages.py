"""Secure case messages and referrals at the hub (issue #8; docs/protocol.md,
"Decisions and extensions"): delivery to participants only, the dat-request's
membership and declaration checks, idempotency on exchange_id, 400s for envelopes
that do not match, and ledger entries that hold hashes, never content."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from gateway.adapters.client import HubClient, HubError
from gateway.crypto.envelope import payload_hash
from tests.conftest import Network
from tests.web.helpers import (
    CASE,
    SUBJECT,
    Wire,
    assert_durable,
    assert_ledger_refs,
    assert_problem,
    open_case,
    query_one,
)

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
    envelopes = [
        await sender.seal_to(
            org,
            kind="message",
            exchange_id=exchange_id,
            case_ref=case_ref,
            subject_ref=subject_ref,
            body={"text": text, "attachments": []},
        )
        for org in recipients
    ]
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
