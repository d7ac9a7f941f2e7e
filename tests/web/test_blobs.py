"""Attachment blobs at the hub (PROTOCOL §4.1 and docs/protocol.md): streamed
uploads checked against their signed digest, the size limit, fetches only by the
recipients of a message that names the blob (everyone else: 404), deletion once
every recipient fetched and acknowledged, and the sweep of unreferenced blobs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.adapters.client import HubClient, HubError
from gateway.clock import FrozenClock
from gateway.crypto.encoding import b64u_encode
from gateway.crypto.secretstream import ciphertext_size
from gateway.errors import EnvelopeError
from gateway.web.hub_app import HubServer, build_hub, purge_now
from tests.conftest import MEMBERS, Network, free_port, make_hub_dir
from tests.web.conftest import run_hub
from tests.web.helpers import (
    CASE,
    Wire,
    assert_durable,
    open_case,
    query_one,
)


def blob_dir(net: Network) -> Path:
    return net.settings.node.database.parent / "blobs"


def stored_blobs(net: Network) -> list[str]:
    folder = blob_dir(net)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def write_file(tmp_path: Path, size: int, name: str = "verslag.pdf") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


async def test_attach_send_fetch_round_trip(network: Network, tmp_path: Path) -> None:
    await open_case(network)
    police, vt = network.client("politie-test"), network.client("vt-test")
    path, data = write_file(tmp_path, 200_000)
    descriptor = await police.attach(path, media_type="application/pdf")
    assert descriptor["size"] == ciphertext_size(len(data))
    assert descriptor["sha256_plain"] == hashlib.sha256(data).hexdigest()
    assert descriptor["filename"] == "verslag.pdf"
    assert stored_blobs(network) == [descriptor["blob_id"]]
    stored = (blob_dir(network) / descriptor["blob_id"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == descriptor["blob_id"]
    assert data[:1024] not in stored

    sent = await police.send_message(
        CASE, ["vt-test"], {"text": "zie bijlage"}, attachments=[descriptor]
    )
    assert sent["delivered"] == ["vt-test"]
    (msg,) = await vt.fetch()
    assert msg.error is None
    (got,) = msg.body["attachments"]  # type: ignore[index]
    dest = tmp_path / "ontvangen.pdf"
    await vt.fetch_attachment(got, dest)
    assert dest.read_bytes() == data
    # Fetched but not acknowledged: still there (a failed decryption may retry).
    assert stored_blobs(network) == [descriptor["blob_id"]]
    await vt.ack([msg.message_id])
    assert stored_blobs(network) == []
    row = await query_one(network.settings.node.database, "SELECT COUNT(*) FROM blobs")
    assert row == (0,)


# -- uploads ---------------------------------------------------------------------------


async def raw_put(
    net: Network, org: str, body: bytes, *, digest_of: bytes | None = None, chunked: bool = False
) -> tuple[int, dict[str, Any]]:
    """PUT /api/v1/blobs with correct signature headers over the digest of `digest_of`
    (default: the body); `chunked` sends it without a Content-Length."""
    headers = put_headers(net, org, body, digest_of=digest_of)
    data: bytes | AsyncIterator[bytes] = body
    if chunked:

        async def pieces() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 65536):
                yield body[i : i + 65536]

        data = pieces()
    async with (
        aiohttp.ClientSession() as session,
        session.put(net.url + "/api/v1/blobs", data=data, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def put_headers(
    net: Network, org: str, body: bytes, *, digest_of: bytes | None = None
) -> dict[str, str]:
    client = HubClient(net.url, net.keys[org])
    return client.signed_headers(
        "PUT",
        "/api/v1/blobs",
        "",
        b"",
        body_sha256=hashlib.sha256(body if digest_of is None else digest_of).digest(),
        content_type="application/octet-stream",
    )


async def test_upload_answers_blob_id_and_size(network: Network) -> None:
    body = os.urandom(100_000)
    status, reply = await raw_put(network, "vt-test", body, chunked=True)
    assert status == 201, reply
    assert reply == {"blob_id": hashlib.sha256(body).hexdigest(), "size": len(body)}
    assert (blob_dir(network) / reply["blob_id"]).read_bytes() == body


async def test_digest_mismatch_is_401_and_leaves_no_file(network: Network) -> None:
    body = os.urandom(70_000)
    status, reply = await raw_put(network, "vt-test", body, digest_of=body[:-1] + b"x")
    assert status == 401
    assert reply["code"] == "unauthenticated"
    assert stored_blobs(network) == []
    assert list(blob_dir(network).iterdir()) == []  # no temporary file either
    row = await query_one(network.settings.node.database, "SELECT COUNT(*) FROM blobs")
    assert row == (0,)


async def test_unsigned_upload_is_401(network: Network) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.put(network.url + "/api/v1/blobs", data=b"x" * 100) as resp,
    ):
        assert resp.status == 401
    assert stored_blobs(network) == []


async def test_empty_upload_is_400(network: Network) -> None:
    status, reply = await raw_put(network, "vt-test", b"")
    # Without a body the signature covers no digest; a signed digest of b"" is a 400.
    assert status in (400, 401), reply
    assert stored_blobs(network) == []


async def test_over_the_limit_is_413_by_content_length_and_while_streaming(
    tmp_path: Path,
) -> None:
    async with run_hub(tmp_path, messages={"max_blob_bytes": 100_000}) as running:
        net = running.net
        body = os.urandom(100_001)
        status, reply = await raw_put(net, "vt-test", body)
        assert status == 413
        assert reply["code"] == "payload-too-large"
        assert "100000" in reply["detail"]
        # Without a Content-Length the hub counts while streaming and stops at the limit.
        status, reply = await raw_put(net, "vt-test", body, chunked=True)
        assert status == 413
        assert reply["code"] == "payload-too-large"
        assert list(blob_dir(net).iterdir()) == []
        # Exactly at the limit is fine.
        status, _ = await raw_put(net, "vt-test", body[:100_000])
        assert status == 201
        # The client library gets a HubError with the problem.
        big = tmp_path / "groot.bin"
        big.write_bytes(os.urandom(200_000))
        with pytest.raises(HubError) as caught:
            await net.client("politie-test").attach(big)
        assert caught.value.status == 413


# -- downloads -------------------------------------------------------------------------


async def signed_get(net: Network, org: str, blob_id: str) -> tuple[int, bytes]:
    client = net.client(org)
    path = f"/api/v1/blobs/{blob_id}"
    headers = client.signed_headers("GET", path, "", b"")
    async with (
        aiohttp.ClientSession() as session,
        session.get(net.url + path, headers=headers) as resp,
    ):
        return resp.status, await resp.read()


async def test_unknown_and_unlisted_blobs_are_404(network: Network, tmp_path: Path) -> None:
    await open_case(network, participants=("politie-test", "vt-test", "ggz-test"))
    police = network.client("politie-test")
    path, _ = write_file(tmp_path, 5000)
    descriptor = await police.attach(path)
    blob_id = descriptor["blob_id"]
    # Not referenced yet: not even the uploader or a future recipient may fetch it.
    for org in ("vt-test", "politie-test"):
        status, body = await signed_get(network, org, blob_id)
        assert status == 404
        assert json.loads(body)["code"] == "not-found"
    await police.send_message(CASE, ["vt-test"], {"text": "x"}, attachments=[descriptor])
    status, body = await signed_get(network, "vt-test", blob_id)
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == blob_id
    # A participant that was not a recipient gets exactly what an unknown id gets.
    unlisted = await signed_get(network, "ggz-test", blob_id)
    unknown = await signed_get(network, "ggz-test", "0" * 64)
    assert unlisted[0] == unknown[0] == 404
    assert json.loads(unlisted[1])["detail"] == json.loads(unknown[1])["detail"]
    assert (await signed_get(network, "ggz-test", "not-hex"))[0] == 404


async def test_someone_elses_blob_cannot_be_referenced(network: Network, tmp_path: Path) -> None:
    await open_case(network, participants=("politie-test", "vt-test", "ggz-test"))
    path, _ = write_file(tmp_path, 3000)
    descriptor = await network.client("politie-test").attach(path)
    # vt-test names politie-test's blob to make it fetchable for ggz-test: refused.
    vt = network.client("vt-test")
    with pytest.raises(HubError) as caught:
        await vt.send_message(CASE, ["ggz-test"], {"text": "x"}, attachments=[descriptor])
    assert caught.value.status == 400
    assert caught.value.problem["errors"][0]["loc"] == ["blobs", 0]
    assert (await signed_get(network, "ggz-test", descriptor["blob_id"]))[0] == 404


async def test_tampered_descriptor_or_blob_fails_and_leaves_no_file(
    network: Network, tmp_path: Path
) -> None:
    await open_case(network)
    police, vt = network.client("politie-test"), network.client("vt-test")
    path, _ = write_file(tmp_path, 150_000)
    descriptor = await police.attach(path)
    await police.send_message(CASE, ["vt-test"], {"text": "x"}, attachments=[descriptor])
    (msg,) = await vt.fetch()
    dest = tmp_path / "uit.bin"
    wrong_hash = {**descriptor, "sha256_plain": "00" * 32}
    with pytest.raises(EnvelopeError):
        await vt.fetch_attachment(wrong_hash, dest)
    other_key = {**descriptor, "key": b64u_encode(bytes(32))}
    with pytest.raises(EnvelopeError):
        await vt.fetch_attachment(other_key, dest)
    assert not dest.exists()
    assert list(tmp_path.glob("*.part")) == []  # noqa: ASYNC240 (a test's own folder)
    # The hub's copy cut short: the FINAL chunk is missing.
    stored = blob_dir(network) / descriptor["blob_id"]
    stored.write_bytes(stored.read_bytes()[:-100])
    with pytest.raises(EnvelopeError):
        await vt.fetch_attachment(descriptor, dest)
    assert not dest.exists()
    assert msg.body is not None


async def test_blob_deleted_only_after_every_recipient_fetched_and_acked(
    network: Network, tmp_path: Path
) -> None:
    await open_case(network, participants=("politie-test", "vt-test", "ggz-test"))
    police = network.client("politie-test")
    path, data = write_file(tmp_path, 10_000)
    descriptor = await police.attach(path)
    await police.send_message(
        CASE, ["vt-test", "ggz-test"], {"text": "x"}, attachments=[descriptor]
    )
    for org in ("vt-test", "ggz-test"):
        client = network.client(org)
        (msg,) = await client.fetch()
        dest = tmp_path / f"{org}.bin"
        await client.fetch_attachment(descriptor, dest)
        assert dest.read_bytes() == data
        assert stored_blobs(network) == [descriptor["blob_id"]]
        await client.ack([msg.message_id])
    assert stored_blobs(network) == []


@contextlib.asynccontextmanager
async def frozen_hub(tmp_path: Path) -> AsyncIterator[tuple[Network, HubServer, FrozenClock]]:
    """A hub on a clock the test moves (sweeps, retention), every member acceded."""
    settings, keys = make_hub_dir(tmp_path, free_port())
    clock = FrozenClock(int(time.time() * 1000))  # after the protocol was published
    server = HubServer(build_hub(settings, clock=clock))
    await server.start()
    net = Network(f"http://127.0.0.1:{settings.http.port}", settings, server.hub, keys)
    try:
        for org in MEMBERS:
            await net.client(org, clock=clock).accede()
        yield net, server, clock
    finally:
        for c in net.clients:
            await c.close()
        await server.stop()


async def test_sweep_drops_unreferenced_and_expired_blobs(tmp_path: Path) -> None:
    async with frozen_hub(tmp_path) as (net, server, clock):
        settings = net.settings
        await open_case(net)
        police = net.client("politie-test", clock=clock)
        loose, kept = write_file(tmp_path, 1000, "a.bin")[0], write_file(tmp_path, 1000, "b.bin")[0]
        unreferenced = await police.attach(loose)
        referenced = await police.attach(kept)
        await police.send_message(CASE, ["vt-test"], {"text": "x"}, attachments=[referenced])
        clock.advance(settings.messages.blob_unreferenced_s + 1)
        assert await server.hub.blobs.sweep() == [unreferenced["blob_id"]]
        assert stored_blobs(net) == [referenced["blob_id"]]
        clock.advance(settings.messages.blob_days * 86_400)
        assert await server.hub.blobs.sweep() == [referenced["blob_id"]]
        assert stored_blobs(net) == []
        metrics = server.hub.metrics.render().decode()
        assert "zvh_gateway_blobs_stored 0.0" in metrics
        assert "zvh_gateway_blob_stored_bytes 0.0" in metrics


async def test_a_replayed_upload_is_refused(network: Network) -> None:
    body = os.urandom(5000)
    headers = put_headers(network, "vt-test", body)
    async with aiohttp.ClientSession() as session:
        for expected in (201, 401):
            async with session.put(
                network.url + "/api/v1/blobs", data=body, headers=headers
            ) as resp:
                assert resp.status == expected
                reply = await resp.json(content_type=None)
    assert reply["code"] == "replayed-request"


async def test_an_attachment_the_hub_did_not_list_is_refused_by_the_recipient(
    network: Network, wire: Wire, tmp_path: Path
) -> None:
    """A sender (or a hub) that leaves a blob out of `blobs` cannot make the recipient
    act on an attachment it may not fetch: the client marks the message invalid."""
    await open_case(network)
    police = network.client("politie-test")
    path, _ = write_file(tmp_path, 2000)
    descriptor = await police.attach(path)
    xid = str(uuid.uuid4())
    env = await police.seal_to(
        "vt-test",
        kind="message",
        exchange_id=xid,
        case_ref=CASE,
        subject_ref="",
        body={"text": "x", "attachments": [descriptor]},
    )
    body = {"case_ref": CASE, "subject_ref": "", "envelopes": [env], "blobs": []}
    reply = await wire.signed(network.keys["politie-test"], "POST", "/api/v1/messages", body)
    assert reply.status == 202, reply.text
    (msg,) = await network.client("vt-test").fetch()
    assert msg.error == "invalid-envelope"
    assert msg.body is None


async def test_retention_deletes_the_blobs_of_a_purged_case(tmp_path: Path) -> None:
    async with frozen_hub(tmp_path) as (net, server, clock):
        settings = net.settings
        zvh = net.client("zvh-test", clock=clock)
        await open_case(net)
        police = net.client("politie-test", clock=clock)
        path, _ = write_file(tmp_path, 3000)
        descriptor = await police.attach(path)
        await police.send_message(CASE, ["vt-test"], {"text": "x"}, attachments=[descriptor])
        await zvh.close_case(CASE)
        assert stored_blobs(net) == [descriptor["blob_id"]]
        clock.advance(settings.retention.case_data_days * 86_400 + 1)
        done = await purge_now(server.hub)
        assert done.cases == (CASE,)
        assert done.blobs == (descriptor["blob_id"],)
        assert stored_blobs(net) == []
        row = await query_one(settings.node.database, "SELECT COUNT(*) FROM messages")
        assert row == (0,)


async def test_an_answer_may_carry_attachments(network: Network, tmp_path: Path) -> None:
    await open_case(network)
    zvh, police = network.client("zvh-test"), network.client("politie-test")
    await zvh.dat_request(CASE, "S1", ["politie-test"], {"q": "bekend?"})
    (request,) = await police.fetch()
    path, data = write_file(tmp_path, 70_000, "proces-verbaal.pdf")
    descriptor = await police.attach(path)
    answered = await police.answer(request, "known", {"contact": "x"}, attachments=[descriptor])
    leaf = await assert_durable(network.settings.node.database, answered["ledger"][0])
    assert leaf.body is not None
    assert leaf.body["blobs"] == [descriptor["blob_id"]]
    answer = next(m for m in await zvh.fetch() if m.kind == "dat-answer")
    assert answer.error is None
    assert answer.body is not None
    (got,) = answer.body["attachments"]
    await zvh.fetch_attachment(got, tmp_path / "pv.pdf")
    assert (tmp_path / "pv.pdf").read_bytes() == data
    # Only the requester may fetch it.
    assert (await signed_get(network, "vt-test", descriptor["blob_id"]))[0] == 404


async def test_an_answer_without_envelope_cannot_name_blobs(
    network: Network, wire: Wire, tmp_path: Path
) -> None:
    await open_case(network)
    await network.client("zvh-test").dat_request(CASE, "S1", ["politie-test"], {"q": "?"})
    police = network.client("politie-test")
    (request,) = await police.fetch()
    descriptor = await police.attach(write_file(tmp_path, 100)[0])
    reply = await wire.signed(
        network.keys["politie-test"],
        "POST",
        f"/api/v1/exchanges/{request.exchange_id}/answers",
        {"decision": "not-known", "blobs": [descriptor["blob_id"]]},
    )
    assert reply.status == 400, reply.text
    assert json.loads(reply.text)["errors"][0]["loc"] == ["blobs"]
