"""PROTOCOL §4 at the hub: it checks every envelope's outer signature and its binding
to the request that carries it, and refuses (400) before anything is recorded or
delivered. Property: any single flipped character of a valid envelope is a 400.
"""

from __future__ import annotations

import string
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.crypto.envelope import HEADER_FIELDS, seal
from tests.conftest import Network
from tests.web.helpers import (
    CASE,
    SUBJECT,
    Wire,
    assert_ok,
    assert_problem,
    dat_body,
    locs,
    open_case,
    unacked_count,
)

B64U_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
MUTABLE_FIELDS = ("enc", "ct", "sig", *HEADER_FIELDS)
TARGET = "/api/v1/dat-requests"


@pytest.fixture
async def valid_request(network: Network) -> dict[str, Any]:
    """A dat-request from zvh-test to politie-test that the hub would accept."""
    await open_case(network)
    return await dat_body(
        network.client("zvh-test"), ["politie-test"], exchange_id=str(uuid.uuid4())
    )


@dataclass(frozen=True, slots=True)
class Flip:
    """One character of one field replaced by another of the same kind (a digit in the
    integer fields, a base64url character otherwise), so that the result still looks
    plausible and only the schema or the signature can catch it."""

    field: str
    position: int
    shift: int

    def apply(self, envelope: dict[str, Any]) -> dict[str, Any]:
        value = envelope[self.field]
        text = str(value)
        i = self.position % len(text)
        if isinstance(value, int):
            digit = str((int(text[i]) + 1 + self.shift % 9) % 10)
            mutated: Any = int(text[:i] + digit + text[i + 1 :])
        else:
            j = B64U_ALPHABET.find(text[i])
            char = B64U_ALPHABET[(j + self.shift) % len(B64U_ALPHABET)] if j >= 0 else "A"
            mutated = text[:i] + char + text[i + 1 :]
        assert mutated != value
        return {**envelope, self.field: mutated}


flips = st.builds(
    Flip,
    field=st.sampled_from(MUTABLE_FIELDS),
    position=st.integers(min_value=0, max_value=4095),
    shift=st.integers(min_value=1, max_value=len(B64U_ALPHABET) - 1),
)


async def test_the_unmutated_envelope_is_accepted(
    network: Network, wire: Wire, valid_request: dict[str, Any]
) -> None:
    """The control for the property below: the same request, untouched, is a 202."""
    reply = await wire.signed(network.keys["zvh-test"], "POST", TARGET, valid_request)
    assert assert_ok(reply, 202)["delivered"] == ["politie-test"]
    assert await unacked_count(network.settings.node.database, "politie-test") == 1


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(flip=flips)
async def test_any_flipped_character_is_refused(
    network: Network, wire: Wire, valid_request: dict[str, Any], flip: Flip
) -> None:
    envelope = flip.apply(valid_request["envelopes"][0])
    reply = await wire.signed(
        network.keys["zvh-test"], "POST", TARGET, {**valid_request, "envelopes": [envelope]}
    )
    problem = assert_problem(reply, 400, "invalid-request")
    assert all(loc[:2] == ["envelopes", 0] for loc in locs(problem)), problem
    assert await unacked_count(network.settings.node.database, "politie-test") == 0


async def test_a_flip_in_each_field_is_refused(
    network: Network, wire: Wire, valid_request: dict[str, Any]
) -> None:
    """Every field at least once, first and last character, whatever Hypothesis draws."""
    for field in MUTABLE_FIELDS:
        for position in (0, -1):
            envelope = Flip(field, position, 1).apply(valid_request["envelopes"][0])
            reply = await wire.signed(
                network.keys["zvh-test"], "POST", TARGET, {**valid_request, "envelopes": [envelope]}
            )
            assert_problem(reply, 400, "invalid-request")
    assert await unacked_count(network.settings.node.database, "politie-test") == 0


async def assert_refused(
    network: Network, wire: Wire, body: dict[str, Any], loc: list[str | int], *, sender: str
) -> None:
    reply = await wire.signed(network.keys[sender], "POST", TARGET, body)
    assert loc in locs(assert_problem(reply, 400, "invalid-request"))
    for org in ("politie-test", "vt-test"):
        assert await unacked_count(network.settings.node.database, org) == 0


async def test_envelope_of_another_sender_is_refused(network: Network, wire: Wire) -> None:
    """A valid envelope, signed by politie-test, relayed by zvh-test."""
    await open_case(network)
    body = await dat_body(
        network.client("politie-test"), ["vt-test"], exchange_id=str(uuid.uuid4())
    )
    await assert_refused(network, wire, body, ["envelopes", 0, "sender"], sender="zvh-test")


async def test_envelope_sealed_to_another_orgs_key_is_refused(network: Network, wire: Wire) -> None:
    await open_case(network)
    keys = network.keys
    envelope = seal(
        sender=keys["zvh-test"],
        recipient="politie-test",
        recipient_encryption_key=keys["vt-test"].encryption_key,
        kind="dat-request",
        exchange_id=str(uuid.uuid4()),
        case_ref=CASE,
        subject_ref=SUBJECT,
        body={"question": "known?"},
        created_ms=0,
    )
    body = {"case_ref": CASE, "subject_ref": SUBJECT, "envelopes": [envelope]}
    await assert_refused(network, wire, body, ["envelopes", 0, "recipient_kid"], sender="zvh-test")


async def test_sibling_envelopes_with_another_exchange_id_are_refused(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    zvh = network.client("zvh-test")
    first = await dat_body(zvh, ["politie-test"], exchange_id=str(uuid.uuid4()))
    second = await dat_body(zvh, ["vt-test"], exchange_id=str(uuid.uuid4()))
    body = {**first, "envelopes": first["envelopes"] + second["envelopes"]}
    await assert_refused(network, wire, body, ["envelopes", 1, "exchange_id"], sender="zvh-test")


@pytest.mark.parametrize("kind", ["dat-answer", "wat-request", "message", "referral"])
async def test_envelope_of_another_kind_is_refused(network: Network, wire: Wire, kind: str) -> None:
    await open_case(network)
    envelope = await network.client("zvh-test").seal_to(
        "politie-test",
        kind=kind,
        exchange_id=str(uuid.uuid4()),
        case_ref=CASE,
        subject_ref=SUBJECT,
        body={"question": "known?"},
    )
    body = {"case_ref": CASE, "subject_ref": SUBJECT, "envelopes": [envelope]}
    await assert_refused(network, wire, body, ["envelopes", 0, "kind"], sender="zvh-test")


async def test_envelope_for_another_case_is_refused(network: Network, wire: Wire) -> None:
    await open_case(network)
    await open_case(network, "C-2")
    body = await dat_body(
        network.client("zvh-test"), ["politie-test"], exchange_id=str(uuid.uuid4()), case_ref="C-2"
    )
    body["case_ref"] = CASE
    await assert_refused(network, wire, body, ["envelopes", 0, "case_ref"], sender="zvh-test")


async def test_envelope_about_another_subject_is_refused(network: Network, wire: Wire) -> None:
    await open_case(network, subjects=("S1", "S2"))
    body = await dat_body(
        network.client("zvh-test"),
        ["politie-test"],
        exchange_id=str(uuid.uuid4()),
        subject_ref="S2",
    )
    body["subject_ref"] = "S1"
    await assert_refused(network, wire, body, ["envelopes", 0, "subject_ref"], sender="zvh-test")


@pytest.mark.parametrize("recipient", ["hub-test", "outsider", "zvh-test"])
async def test_envelope_to_the_hub_an_outsider_or_oneself_is_refused(
    network: Network, wire: Wire, recipient: str
) -> None:
    await open_case(network)
    keys = network.keys
    key = (
        network.hub.keys.encryption_key
        if recipient == "hub-test"
        else keys[recipient].encryption_key
    )
    envelope = seal(
        sender=keys["zvh-test"],
        recipient=recipient,
        recipient_encryption_key=key,
        kind="dat-request",
        exchange_id=str(uuid.uuid4()),
        case_ref=CASE,
        subject_ref=SUBJECT,
        body={"question": "known?"},
        created_ms=0,
    )
    body = {"case_ref": CASE, "subject_ref": SUBJECT, "envelopes": [envelope]}
    await assert_refused(network, wire, body, ["envelopes", 0, "recipient"], sender="zvh-test")


async def test_two_envelopes_to_one_recipient_are_refused(network: Network, wire: Wire) -> None:
    await open_case(network)
    xid = str(uuid.uuid4())
    body = await dat_body(
        network.client("zvh-test"), ["politie-test", "politie-test"], exchange_id=xid
    )
    await assert_refused(network, wire, body, ["envelopes"], sender="zvh-test")


async def test_binding_errors_come_before_403_and_404(network: Network, wire: Wire) -> None:
    """PROTOCOL §3: a mismatched envelope is a 400 even from a non-participant, or for a
    case that does not exist."""
    await open_case(network)
    outsider_to_case = await network.client("ggz-test").seal_to(
        "politie-test",
        kind="message",
        exchange_id=str(uuid.uuid4()),
        case_ref=CASE,
        subject_ref=SUBJECT,
        body={},
    )
    body = {"case_ref": CASE, "subject_ref": SUBJECT, "envelopes": [outsider_to_case]}
    await assert_refused(network, wire, body, ["envelopes", 0, "kind"], sender="ggz-test")

    unknown_case = await network.client("zvh-test").seal_to(
        "politie-test",
        kind="message",
        exchange_id=str(uuid.uuid4()),
        case_ref="C-404",
        subject_ref=SUBJECT,
        body={},
    )
    body = {"case_ref": "C-404", "subject_ref": SUBJECT, "envelopes": [unknown_case]}
    await assert_refused(network, wire, body, ["envelopes", 0, "kind"], sender="zvh-test")


async def test_an_invalid_signature_comes_before_a_later_envelopes_fault(
    network: Network, wire: Wire
) -> None:
    """The hub verifies a request's outer signatures together (in its verifier
    process), yet reports faults envelope by envelope: the first envelope's bad
    signature, not the second one's binding."""
    await open_case(network)
    zvh = network.client("zvh-test")
    first = await dat_body(zvh, ["politie-test"], exchange_id=str(uuid.uuid4()))
    second = await dat_body(zvh, ["vt-test"], exchange_id=str(uuid.uuid4()))
    forged = Flip("sig", 5, 1).apply(first["envelopes"][0])
    body = {**first, "envelopes": [forged, second["envelopes"][0]]}
    reply = await wire.signed(network.keys["zvh-test"], "POST", TARGET, body)
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["envelopes", 0, "sig"]]


async def test_the_second_envelopes_invalid_signature_is_named(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    body = await dat_body(
        network.client("zvh-test"), ["politie-test", "vt-test"], exchange_id=str(uuid.uuid4())
    )
    body["envelopes"][1] = Flip("sig", 9, 3).apply(body["envelopes"][1])
    reply = await wire.signed(network.keys["zvh-test"], "POST", TARGET, body)
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["envelopes", 1, "sig"]]
    for org in ("politie-test", "vt-test"):
        assert await unacked_count(network.settings.node.database, org) == 0
