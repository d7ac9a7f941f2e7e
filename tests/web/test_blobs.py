"""Attachment blobs at the hub (PROTOCOL §4.1 and docs/protocol.md): streamed
uploads checked against their signed digest, the size limit, fetches only by the
recipients of a message that names the blob (everyone else: 404), deletion once
every recipient fetched and acknowledged, and the sweep of unreferenced blobs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gateway.adapters.client import HubClient
from gateway.crypto.secretstream import ciphertext_size
from tests.conftest import Network
from tests.web.helpers import (
    CASE,
    Wire,
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


def put_headers(
    wire: Wire, net: Network, org: str, body: bytes, *, digest_of: bytes | None = None
) -> dict[str, str]:
    """Correct signature headers for PUT /api/v1/blobs, over the digest of `digest_of`
    (default: the body itself)."""
    client = HubClient(net.url, net.keys[org])
    return client.signed_headers(
        "PUT",
        "/api/v1/blobs",
        "",
        b"",
        body_sha256=hashlib.sha256(body if digest_of is None else digest_of).digest(),
        content_type="application/octet-stream",
    )


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
