"""PROTOCOL §2 over real HTTP: every reason a signed request is refused with 401, the
replay cache (also across a restart), and that a 401 never says which check failed.

Each refusal is compared with the problem an unsigned request gets, so a body that
leaks its reason (another detail, an extra member) fails the test. Every test also
has a control next to it (the same request signed correctly is accepted), so a
refusal cannot come from a mistake of the test's own signer.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from gateway.clock import SystemClock
from gateway.crypto.encoding import b64_decode, b64_encode, b64u_encode
from gateway.crypto.httpsig import content_digest
from gateway.crypto.keys import OrgKeys
from gateway.services import admin
from tests.conftest import Network
from tests.web.conftest import RunningHub
from tests.web.helpers import (
    CASE,
    PROBLEM_FIELDS,
    Reply,
    Wire,
    assert_ok,
    assert_problem,
    encode_json,
    fresh_params,
    open_case,
    raw_signature,
)

GET_TARGET = "/api/v1/directory"
POST_TARGET = "/api/v1/inbox/ack"
POST_BODY = encode_json({"message_ids": [1]})


async def assert_unauthenticated(wire: Wire, reply: Reply) -> None:
    """401 `unauthenticated`, and byte for byte the body of an unsigned request."""
    body = assert_problem(reply, 401, "unauthenticated")
    reference = await wire.send("GET", GET_TARGET)
    assert body == assert_problem(reference, 401, "unauthenticated")
    assert set(body) == PROBLEM_FIELDS


def police(network: Network) -> OrgKeys:
    return network.keys["politie-test"]


# -- controls -------------------------------------------------------------------------


async def test_correctly_signed_get_and_post_are_accepted(network: Network, wire: Wire) -> None:
    assert_ok(await wire.signed(police(network), "GET", GET_TARGET), 200)
    reply = await wire.signed(police(network), "POST", POST_TARGET, raw=POST_BODY)
    assert assert_ok(reply, 200) == {"acked": []}


async def test_hand_built_signature_with_every_component_is_accepted(
    network: Network, wire: Wire
) -> None:
    """The test's own RFC 9421 signer agrees with the hub (so its refusals below count)."""
    keys = police(network)
    components = wire.components("POST", POST_TARGET, POST_BODY)
    headers = raw_signature(keys, components, fresh_params(keys), label="any-label")
    headers |= {"Content-Digest": content_digest(POST_BODY), "Content-Type": "application/json"}
    assert_ok(await wire.send("POST", POST_TARGET, body=POST_BODY, headers=headers), 200)


async def test_parameters_in_the_signers_order_are_accepted(network: Network, wire: Wire) -> None:
    """`@signature-params` is rebuilt from the received member verbatim."""
    keys = police(network)
    params = (
        f';alg="ed25519";keyid="{keys.org}/{keys.signing_kid}"'
        f';nonce="{b64u_encode(os.urandom(16))}";created={int(time.time())}'
    )
    headers = raw_signature(keys, wire.components("GET", GET_TARGET), params)
    assert_ok(await wire.send("GET", GET_TARGET, headers=headers), 200)


# -- missing or invalid signature ----------------------------------------------------


async def test_missing_signature_headers_is_unauthenticated(network: Network, wire: Wire) -> None:
    reply = await wire.send("GET", GET_TARGET)
    body = assert_problem(reply, 401, "unauthenticated")
    # No member beyond RFC 9457 + code: nothing that could carry a reason.
    assert set(body) == PROBLEM_FIELDS
    assert body["title"]
    assert body["detail"]


@pytest.mark.parametrize("keep", ["Signature-Input", "Signature"])
async def test_half_of_the_signature_fields_is_unauthenticated(
    network: Network, wire: Wire, keep: str
) -> None:
    headers = wire.sign(police(network), "GET", GET_TARGET)
    await assert_unauthenticated(
        wire, await wire.send("GET", GET_TARGET, headers={keep: headers[keep]})
    )


@pytest.mark.parametrize("position", [0, 31, 63])
async def test_flipped_signature_byte_is_unauthenticated(
    network: Network, wire: Wire, position: int
) -> None:
    headers = wire.sign(police(network), "GET", GET_TARGET)
    label, _, value = headers["Signature"].partition("=")
    raw = bytearray(b64_decode(value.strip(":")))
    raw[position] ^= 0x01
    headers["Signature"] = f"{label}=:{b64_encode(bytes(raw))}:"
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


async def test_signature_over_another_method_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    keys = police(network)
    components = [("@method", "POST"), *wire.components("GET", GET_TARGET)[1:]]
    headers = raw_signature(keys, components, fresh_params(keys))
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


# -- created ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset_s", [-301, -3600, 301, 3600], ids=["old", "older", "ahead", "far"])
async def test_created_outside_300_s_is_unauthenticated(
    network: Network, wire: Wire, offset_s: int
) -> None:
    headers = wire.sign(police(network), "GET", GET_TARGET, created=int(time.time()) + offset_s)
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


@pytest.mark.parametrize("offset_s", [-250, 250])
async def test_created_within_300_s_is_accepted(
    network: Network, wire: Wire, offset_s: int
) -> None:
    headers = wire.sign(police(network), "GET", GET_TARGET, created=int(time.time()) + offset_s)
    assert_ok(await wire.send("GET", GET_TARGET, headers=headers), 200)


# -- replay ------------------------------------------------------------------------------


async def test_replayed_get_is_refused(network: Network, wire: Wire) -> None:
    headers = wire.sign(police(network), "GET", GET_TARGET)
    assert_ok(await wire.send("GET", GET_TARGET, headers=headers), 200)
    replay = await wire.send("GET", GET_TARGET, headers=headers)
    assert_problem(replay, 401, "replayed-request")


async def test_replayed_post_is_refused_and_has_no_effect(network: Network, wire: Wire) -> None:
    """The replay is refused before the handler runs: not a 409 case-exists."""
    zvh = network.keys["zvh-test"]
    body = encode_json(
        {
            "case_ref": CASE,
            "theme": "huiselijk-geweld",
            "subjects": [{"subject_ref": "S1", "pid": "ab" * 64}],
            "participants": ["politie-test"],
        }
    )
    headers = wire.sign(zvh, "POST", "/api/v1/cases", body)
    assert_ok(await wire.send("POST", "/api/v1/cases", body=body, headers=headers), 201)
    replay = await wire.send("POST", "/api/v1/cases", body=body, headers=headers)
    assert_problem(replay, 401, "replayed-request")


async def test_nonce_reused_on_another_request_is_a_replay(network: Network, wire: Wire) -> None:
    """The replay key is (keyid, nonce), whatever the request."""
    nonce = os.urandom(16)
    first = wire.sign(police(network), "GET", GET_TARGET, nonce=nonce)
    assert_ok(await wire.send("GET", GET_TARGET, headers=first), 200)
    other = wire.sign(police(network), "GET", "/api/v1/inbox", nonce=nonce)
    assert_problem(await wire.send("GET", "/api/v1/inbox", headers=other), 401, "replayed-request")


async def test_nonce_of_another_key_is_not_a_replay(network: Network, wire: Wire) -> None:
    nonce = os.urandom(16)
    for org in ("politie-test", "vt-test"):
        headers = wire.sign(network.keys[org], "GET", GET_TARGET, nonce=nonce)
        assert_ok(await wire.send("GET", GET_TARGET, headers=headers), 200)


async def test_same_request_with_a_fresh_nonce_is_not_a_replay(
    network: Network, wire: Wire
) -> None:
    for _ in range(3):
        assert_ok(await wire.signed(police(network), "GET", GET_TARGET), 200)


async def test_replay_after_restart_is_refused(restartable: RunningHub) -> None:
    """The replay cache survives a restart: a read, an accepted write and a write
    refused by validation are all still replays on a new hub over the same files."""
    net, wire = restartable.net, restartable.wire
    keys, zvh = net.keys["politie-test"], net.keys["zvh-test"]
    read = wire.sign(keys, "GET", GET_TARGET)
    assert_ok(await wire.send("GET", GET_TARGET, headers=read), 200)
    register = encode_json(
        {
            "case_ref": CASE,
            "theme": "huiselijk-geweld",
            "subjects": [{"subject_ref": "S1", "pid": "ab" * 64}],
            "participants": ["politie-test"],
        }
    )
    write = wire.sign(zvh, "POST", "/api/v1/cases", register)
    assert_ok(await wire.send("POST", "/api/v1/cases", body=register, headers=write), 201)
    invalid = encode_json({"case_ref": CASE})
    refused = wire.sign(zvh, "POST", "/api/v1/cases", invalid)
    assert_problem(
        await wire.send("POST", "/api/v1/cases", body=invalid, headers=refused),
        400,
        "invalid-request",
    )

    await restartable.restart()

    assert_problem(await wire.send("GET", GET_TARGET, headers=read), 401, "replayed-request")
    assert_problem(
        await wire.send("POST", "/api/v1/cases", body=register, headers=write),
        401,
        "replayed-request",
    )
    assert_problem(
        await wire.send("POST", "/api/v1/cases", body=invalid, headers=refused),
        401,
        "replayed-request",
    )
    # The new hub still serves fresh requests.
    assert_ok(await wire.signed(keys, "GET", GET_TARGET), 200)


async def test_replay_of_a_refused_request_after_restart_is_refused(
    restartable: RunningHub,
) -> None:
    """Captured while the case did not exist (404), replayed after it was registered
    and the hub restarted: the replay must not close the case."""
    net, wire = restartable.net, restartable.wire
    zvh = net.keys["zvh-test"]
    target = f"/api/v1/cases/{CASE}/close"
    headers = wire.sign(zvh, "POST", target, b"{}")
    assert_problem(await wire.send("POST", target, body=b"{}", headers=headers), 404, "not-found")
    await open_case(net)
    await restartable.restart()
    replay = await wire.send("POST", target, body=b"{}", headers=headers)
    assert_problem(replay, 401, "replayed-request")


# -- keys ----------------------------------------------------------------------------------


async def test_unknown_organisation_is_unauthenticated(network: Network, wire: Wire) -> None:
    reply = await wire.signed(network.keys["outsider"], "GET", GET_TARGET)
    await assert_unauthenticated(wire, reply)


async def test_unknown_key_of_a_known_organisation_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    reply = await wire.signed(OrgKeys.generate("politie-test"), "GET", GET_TARGET)
    await assert_unauthenticated(wire, reply)


async def test_revoked_key_is_unauthenticated(network: Network, wire: Wire) -> None:
    keys = network.keys["ggz-test"]
    assert_ok(await wire.signed(keys, "GET", GET_TARGET), 200)
    assert admin.revoke_partner(network.settings, SystemClock(), "ggz-test")
    deadline = time.monotonic() + 5.0
    reply = await wire.signed(keys, "GET", GET_TARGET)
    while reply.status == 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        reply = await wire.signed(keys, "GET", GET_TARGET)
    await assert_unauthenticated(wire, reply)


async def test_expired_key_is_unauthenticated(network: Network, wire: Wire) -> None:
    clock = SystemClock()
    now = clock.now_ms()
    expired, current = OrgKeys.generate("expired-test"), OrgKeys.generate("current-test")
    for keys, until in ((expired, now - 1_000), (current, now + 3_600_000)):
        admin.add_partner(
            network.settings,
            clock,
            public=keys.public(),
            role="partner",
            domain="zorg",
            name=None,
            valid_until_ms=until,
        )
    # Both were added in one go: once the hub accepts the current key it has loaded both.
    deadline = time.monotonic() + 5.0
    while (await wire.signed(current, "GET", GET_TARGET)).status != 200:
        assert time.monotonic() < deadline, "the hub never loaded the new keys"
        await asyncio.sleep(0.1)
    await assert_unauthenticated(wire, await wire.signed(expired, "GET", GET_TARGET))


# -- content digest ------------------------------------------------------------------------


async def test_missing_content_digest_is_unauthenticated(network: Network, wire: Wire) -> None:
    headers = wire.sign(police(network), "POST", POST_TARGET, POST_BODY)
    del headers["Content-Digest"]
    reply = await wire.send("POST", POST_TARGET, body=POST_BODY, headers=headers)
    await assert_unauthenticated(wire, reply)


async def test_body_not_matching_the_signed_digest_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    """The signature over the digest is valid; the body is another one."""
    headers = wire.sign(police(network), "POST", POST_TARGET, POST_BODY)
    other = encode_json({"message_ids": [2]})
    reply = await wire.send("POST", POST_TARGET, body=other, headers=headers)
    await assert_unauthenticated(wire, reply)


async def test_digest_of_the_body_but_not_the_signed_one_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    headers = wire.sign(police(network), "POST", POST_TARGET, POST_BODY)
    other = encode_json({"message_ids": [2]})
    headers["Content-Digest"] = content_digest(other)
    reply = await wire.send("POST", POST_TARGET, body=other, headers=headers)
    await assert_unauthenticated(wire, reply)


async def test_content_type_other_than_signed_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    headers = wire.sign(police(network), "POST", POST_TARGET, POST_BODY)
    headers["Content-Type"] = "text/plain"
    reply = await wire.send("POST", POST_TARGET, body=POST_BODY, headers=headers)
    await assert_unauthenticated(wire, reply)


# -- covered components and parameters ------------------------------------------------------


@pytest.mark.parametrize(
    "dropped",
    ["@method", "@authority", "@path", "@query", "content-digest", "content-type"],
)
async def test_missing_covered_component_is_unauthenticated(
    network: Network, wire: Wire, dropped: str
) -> None:
    keys = police(network)
    components = [c for c in wire.components("POST", POST_TARGET, POST_BODY) if c[0] != dropped]
    headers = raw_signature(keys, components, fresh_params(keys))
    headers |= {"Content-Digest": content_digest(POST_BODY), "Content-Type": "application/json"}
    reply = await wire.send("POST", POST_TARGET, body=POST_BODY, headers=headers)
    await assert_unauthenticated(wire, reply)


async def test_extra_covered_component_is_unauthenticated(network: Network, wire: Wire) -> None:
    keys = police(network)
    components = [*wire.components("GET", GET_TARGET), ("x-trace", "1")]
    headers = raw_signature(keys, components, fresh_params(keys)) | {"X-Trace": "1"}
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


async def test_components_in_another_order_are_unauthenticated(
    network: Network, wire: Wire
) -> None:
    keys = police(network)
    components = list(reversed(wire.components("GET", GET_TARGET)))
    headers = raw_signature(keys, components, fresh_params(keys))
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


@pytest.mark.parametrize(
    "extra",
    [f";expires={int(time.time()) + 60}", ';tag="zvh"', ';alg="ed25519"'],
    ids=["expires", "tag", "alg-twice"],
)
async def test_extra_signature_parameter_is_unauthenticated(
    network: Network, wire: Wire, extra: str
) -> None:
    keys = police(network)
    headers = raw_signature(
        keys, wire.components("GET", GET_TARGET), fresh_params(keys, extra=extra)
    )
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


async def test_missing_nonce_is_unauthenticated(network: Network, wire: Wire) -> None:
    keys = police(network)
    params = f';created={int(time.time())};keyid="{keys.org}/{keys.signing_kid}";alg="ed25519"'
    headers = raw_signature(keys, wire.components("GET", GET_TARGET), params)
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


async def test_second_signature_in_one_field_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    keys = police(network)
    components = wire.components("GET", GET_TARGET)
    first = raw_signature(keys, components, fresh_params(keys), label="sig1")
    second = raw_signature(keys, components, fresh_params(keys), label="sig2")
    headers = {name: f"{first[name]}, {second[name]}" for name in ("Signature-Input", "Signature")}
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


async def test_second_signature_in_repeated_header_lines_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    keys = police(network)
    components = wire.components("GET", GET_TARGET)
    first = raw_signature(keys, components, fresh_params(keys), label="sig1")
    second = raw_signature(keys, components, fresh_params(keys), label="sig2")
    headers = [(n, h[n]) for h in (first, second) for n in ("Signature-Input", "Signature")]
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


# -- @authority ------------------------------------------------------------------------------


async def test_signature_for_another_authority_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    port = network.settings.http.port
    headers = wire.sign(police(network), "GET", GET_TARGET, authority=f"localhost:{port}")
    await assert_unauthenticated(wire, await wire.send("GET", GET_TARGET, headers=headers))


async def test_authority_is_not_taken_from_the_host_header(network: Network, wire: Wire) -> None:
    keys = police(network)
    spoofed = wire.sign(keys, "GET", GET_TARGET, authority="zvh.example.org")
    reply = await wire.send("GET", GET_TARGET, headers=spoofed | {"Host": "zvh.example.org"})
    await assert_unauthenticated(wire, reply)
    # The configured authority is what counts, whatever Host says.
    honest = wire.sign(keys, "GET", GET_TARGET)
    assert_ok(await wire.send("GET", GET_TARGET, headers=honest | {"Host": "other.example"}), 200)


# -- raw, percent-encoded targets -------------------------------------------------------------

ENCODED_QUERY = "/api/v1/inbox?wait=0&x=%2D"


async def test_percent_encoded_query_signed_raw_is_accepted(network: Network, wire: Wire) -> None:
    reply = await wire.signed(police(network), "GET", ENCODED_QUERY)
    assert assert_ok(reply, 200) == {"messages": []}


async def test_percent_encoded_query_signed_decoded_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    headers = wire.sign(
        police(network), "GET", ENCODED_QUERY, signed_target="/api/v1/inbox?wait=0&x=-"
    )
    await assert_unauthenticated(wire, await wire.send("GET", ENCODED_QUERY, headers=headers))


async def test_percent_encoded_path_signed_raw_is_accepted(network: Network, wire: Wire) -> None:
    await open_case(network)
    target = "/api/v1/cases/C%2D1/close"
    reply = await wire.signed(network.keys["zvh-test"], "POST", target, {})
    assert assert_ok(reply, 200)["case_ref"] == CASE


async def test_percent_encoded_path_signed_decoded_is_unauthenticated(
    network: Network, wire: Wire
) -> None:
    await open_case(network)
    target = "/api/v1/cases/C%2D1/close"
    headers = wire.sign(
        network.keys["zvh-test"], "POST", target, b"{}", signed_target=f"/api/v1/cases/{CASE}/close"
    )
    reply = await wire.send("POST", target, body=b"{}", headers=headers)
    await assert_unauthenticated(wire, reply)
