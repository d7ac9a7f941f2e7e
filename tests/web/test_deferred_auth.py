"""A request signature checked together with the envelopes' (one hand-over to the
verifier): the routes that put it off still answer exactly as if it had been checked
first. A forged request gets the 401 whatever its body or envelopes say, changes
nothing, and cannot burn the nonce of the genuine request it copies.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, cast

import pytest

from gateway.crypto.encoding import b64_decode, b64_encode, b64u_decode, b64u_encode
from gateway.crypto.httpsig import sign_request
from gateway.errors import ReplayedRequest
from gateway.storage.database import Tx
from gateway.web.middleware import ENVELOPE_ROUTES
from tests.conftest import Network
from tests.web.helpers import (
    Wire,
    assert_ok,
    assert_problem,
    dat_body,
    encode_json,
    ledger_size,
    locs,
    open_case,
    query_one,
    verifier_calls,
)
from tests.web.test_dat import answer_body, answers_target, delivered_request

TARGET = "/api/v1/dat-requests"
JSON = "application/json"


def forged(headers: dict[str, str]) -> dict[str, str]:
    """The same headers with one bit of the signature flipped."""
    label, _, value = headers["Signature"].partition("=")
    raw = bytearray(b64_decode(value.strip(":")))
    raw[7] ^= 0x01
    return {**headers, "Signature": f"{label}=:{b64_encode(bytes(raw))}:"}


async def delivered_to(network: Network, org: str) -> int:
    sql = "SELECT COUNT(*) FROM inbox WHERE org = ? AND kind = 'dat-request'"
    row = await query_one(network.settings.node.database, sql, org)
    assert row is not None
    return int(row[0])


async def a_dat_body(network: Network) -> bytes:
    body = await dat_body(
        network.client("zvh-test"), ["politie-test", "vt-test"], exchange_id=str(uuid.uuid4())
    )
    return encode_json(body)


def tamper_envelope(body: bytes) -> bytes:
    """The second envelope's outer signature with one bit flipped."""
    value: dict[str, Any] = json.loads(body)
    sig = bytearray(b64u_decode(value["envelopes"][1]["sig"]))
    sig[0] ^= 0x01
    value["envelopes"][1]["sig"] = b64u_encode(bytes(sig))
    return encode_json(value)


@pytest.mark.parametrize("route", sorted(ENVELOPE_ROUTES))
async def test_every_route_that_puts_it_off_answers_a_forgery_with_401(
    network: Network, wire: Wire, route: str
) -> None:
    route = route.replace("{exchange_id}", str(uuid.uuid4()))
    body = encode_json({})
    headers = wire.sign(network.keys["zvh-test"], "POST", route, body)
    forgery = await wire.send("POST", route, body=body, headers=forged(headers))
    assert_problem(forgery, 401, "unauthenticated")
    # Control: signed correctly, the empty body is the handler's 400.
    assert_problem(
        await wire.send("POST", route, body=body, headers=headers), 400, "invalid-request"
    )


async def test_a_forged_dat_request_is_unauthenticated_changes_nothing_and_burns_no_nonce(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    body = await a_dat_body(network)
    headers = wire.sign(network.keys["zvh-test"], "POST", TARGET, body)
    size = await ledger_size(network.settings.node.database)
    before = await delivered_to(network, "politie-test")
    reply = await wire.send("POST", TARGET, body=body, headers=forged(headers))
    assert_problem(reply, 401, "unauthenticated")
    assert await ledger_size(network.settings.node.database) == size
    assert await delivered_to(network, "politie-test") == before
    # The genuine request with the same nonce still goes through: the forgery did not
    # claim it.
    assert_ok(await wire.send("POST", TARGET, body=body, headers=headers), 202)
    assert await delivered_to(network, "politie-test") == before + 1


def failures(network: Network, code: str) -> float:
    value = network.hub.metrics.registry.get_sample_value(
        "zvh_gateway_auth_failures_total", {"code": code}
    )
    return value or 0.0


async def test_a_forgery_is_counted_once(network: Network, wire: Wire) -> None:
    """Whether the handler met the bad signature itself or failed first."""
    await open_case(network)
    for body in (await a_dat_body(network), encode_json({})):
        before = failures(network, "unauthenticated")
        headers = wire.sign(network.keys["zvh-test"], "POST", TARGET, body)
        reply = await wire.send("POST", TARGET, body=body, headers=forged(headers))
        assert_problem(reply, 401, "unauthenticated")
        assert failures(network, "unauthenticated") == before + 1


async def test_a_forged_signature_outranks_a_tampered_envelope(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    body = tamper_envelope(await a_dat_body(network))
    headers = wire.sign(network.keys["zvh-test"], "POST", TARGET, body)
    assert_problem(
        await wire.send("POST", TARGET, body=body, headers=forged(headers)), 401, "unauthenticated"
    )
    problem = assert_problem(
        await wire.send("POST", TARGET, body=body, headers=headers), 400, "invalid-request"
    )
    assert locs(problem) == [["envelopes", 1, "sig"]]


async def test_a_replayed_dat_request_is_refused_even_with_another_body(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    body = await a_dat_body(network)
    nonce = os.urandom(16)
    headers = wire.sign(network.keys["zvh-test"], "POST", TARGET, body, nonce=nonce)
    assert_ok(await wire.send("POST", TARGET, body=body, headers=headers), 202)
    assert_problem(
        await wire.send("POST", TARGET, body=body, headers=headers), 401, "replayed-request"
    )
    # Another (invalid) body under the same nonce, signed correctly: still the replay.
    other = encode_json({"case_ref": 5})
    again = wire.sign(network.keys["zvh-test"], "POST", TARGET, other, nonce=nonce)
    assert_problem(
        await wire.send("POST", TARGET, body=other, headers=again), 401, "replayed-request"
    )


async def test_a_dat_request_is_one_call_to_the_verifier(
    network: Network, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's signature and its two envelopes' go over together."""
    await open_case(network)
    body = await a_dat_body(network)
    calls = verifier_calls(network, monkeypatch)
    headers = wire.sign(network.keys["zvh-test"], "POST", TARGET, body)
    assert_ok(await wire.send("POST", TARGET, body=body, headers=headers), 202)
    assert calls == [3]
    # A route that does not put it off: the signature on its own.
    calls.clear()
    assert_ok(await wire.signed(network.keys["zvh-test"], "GET", "/api/v1/directory"), 200)
    assert calls == [1]


async def test_an_unchecked_request_cannot_reach_a_write(network: Network) -> None:
    """A route that put the check off and never made it fails loudly, not silently."""
    body = b"{}"
    nonce = os.urandom(16)
    headers = sign_request(
        keys=network.keys["zvh-test"],
        method="POST",
        authority=network.settings.authority,
        path=TARGET,
        query="",
        body=body,
        content_type=JSON,
        created=int(time.time()),
        nonce=nonce,
    )
    request: dict[str, Any] = {
        "method": "POST",
        "path": TARGET,
        "query": "",
        "body": body,
        "signature_input": headers["Signature-Input"],
        "signature": headers["Signature"],
        "content_digest": headers["Content-Digest"],
        "content_type": JSON,
    }
    authenticator = network.hub.authenticator
    unchecked = await authenticator.authenticate(**request, defer=True)
    assert not unchecked.verified
    with pytest.raises(RuntimeError, match="before its signature was checked"):
        unchecked.persist(cast(Tx, None))
    await unchecked.confirm()
    assert unchecked.verified
    # Settled once: the nonce is claimed, so the same request is now a replay.
    with pytest.raises(ReplayedRequest):
        await authenticator.authenticate(**request)


async def inbox_rows(network: Network, org: str) -> int:
    row = await query_one(
        network.settings.node.database, "SELECT COUNT(*) FROM inbox WHERE org = ?", org
    )
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("sealed", [True, False], ids=["with-envelope", "without-envelope"])
async def test_a_forged_answer_changes_nothing_and_the_genuine_one_then_goes_through(
    network: Network, wire: Wire, monkeypatch: pytest.MonkeyPatch, sealed: bool
) -> None:
    """A single answer puts its signature check off too: with an envelope it goes
    over with the envelope's, in one call; without one it is settled on its own,
    before the answer is written."""
    request = await delivered_request(network, wire)
    target = answers_target(request)
    body = encode_json(await answer_body(network, request) if sealed else {"decision": "not-known"})
    headers = wire.sign(network.keys["politie-test"], "POST", target, body)
    size = await ledger_size(network.settings.node.database)
    before = await inbox_rows(network, "zvh-test")
    calls = verifier_calls(network, monkeypatch)
    assert_problem(
        await wire.send("POST", target, body=body, headers=forged(headers)), 401, "unauthenticated"
    )
    assert await ledger_size(network.settings.node.database) == size
    assert await inbox_rows(network, "zvh-test") == before
    calls.clear()
    assert_ok(await wire.send("POST", target, body=body, headers=headers), 202)
    assert calls == ([2] if sealed else [1])
    assert await inbox_rows(network, "zvh-test") > before
