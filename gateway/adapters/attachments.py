"""The client library's side of attachments, case messages and referrals (issue #8).

`HubClient.attach`, `fetch_attachment`, `send_message` and `send_referral` are thin
wrappers around these functions, so that client.py stays small.

An attachment is encrypted with a fresh key, streaming (PROTOCOL §4.1), into a
temporary ciphertext file next to nothing secret (ciphertext only), hashed on the
way, and uploaded from that file with `PUT /api/v1/blobs`: the request signature
covers the ciphertext's SHA-256, which is known only after the whole file was
encrypted, and re-encrypting would give other bytes (the stream header is random).
The descriptor it returns holds the key; it belongs in a sealed body, never
anywhere else. Downloads are decrypted chunk by chunk into a partial file that
replaces `dest` only when the FINAL chunk arrived and the plaintext hash matched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yarl import URL

from gateway.adapters.received import HubError
from gateway.crypto.encoding import b64u_decode, b64u_encode
from gateway.crypto.secretstream import CIPHER_CHUNK, Decryptor, Sealed, encrypt_file
from gateway.errors import EnvelopeError

if TYPE_CHECKING:
    from gateway.adapters.client import HubClient

BLOBS_PATH = "/api/v1/blobs"
# The kinds whose sealed body may describe attachments the recipient can fetch.
CARRIERS = frozenset({"message", "referral", "dat-answer", "wat-answer"})
DESCRIPTOR_FIELDS = ("blob_id", "size", "key", "header", "filename", "media_type", "sha256_plain")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _encrypt_to(source: Path, target: Path) -> Sealed:
    with source.open("rb") as src, target.open("wb") as dst:
        sealed = encrypt_file(src.read, dst.write)
        dst.flush()
    return sealed


async def attach(
    client: HubClient,
    path: Path,
    *,
    media_type: str = "application/octet-stream",
    filename: str | None = None,
) -> dict[str, Any]:
    fd, name = tempfile.mkstemp(prefix="zvh-blob-", suffix=".ct")
    os.close(fd)
    tmp = Path(name)
    try:
        # Encryption runs off the event loop: a large file must not stall other requests.
        sealed = await asyncio.to_thread(_encrypt_to, path, tmp)
        headers = client.signed_headers(
            "PUT",
            BLOBS_PATH,
            "",
            b"",
            body_sha256=sealed.cipher_sha256,
            content_type="application/octet-stream",
        )
        headers["Content-Length"] = str(sealed.cipher_size)
        url = URL(client.base_url + BLOBS_PATH, encoded=True)
        body = await asyncio.to_thread(tmp.open, "rb")
        try:
            # aiohttp streams a file object in small chunks (read off the event loop).
            async with client._http().put(url, data=body, headers=headers) as resp:
                data = await client.read_json(resp)
        finally:
            body.close()
        if (
            data.get("blob_id") != sealed.cipher_sha256.hex()
            or data.get("size") != sealed.cipher_size
        ):
            raise HubError(502, {"code": "bad-response", "detail": "the hub stored other bytes"})
    finally:
        await asyncio.to_thread(_unlink, tmp)
    return {
        "blob_id": data["blob_id"],
        "size": sealed.cipher_size,
        "key": b64u_encode(sealed.key),
        "header": b64u_encode(sealed.header),
        "filename": filename if filename is not None else path.name,
        "media_type": media_type,
        "sha256_plain": sealed.plain_sha256.hex(),
    }


def _parse_descriptor(descriptor: Mapping[str, Any]) -> tuple[str, int, bytes, bytes, bytes]:
    try:
        blob_id = str(descriptor["blob_id"])
        size = int(descriptor["size"])
        key = b64u_decode(str(descriptor["key"]))
        header = b64u_decode(str(descriptor["header"]))
        plain = bytes.fromhex(str(descriptor["sha256_plain"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError("attachment descriptor malformed") from exc
    if len(blob_id) != 64 or any(c not in "0123456789abcdef" for c in blob_id) or len(plain) != 32:
        raise EnvelopeError("attachment descriptor malformed")
    return blob_id, size, key, header, plain


async def fetch_attachment(client: HubClient, descriptor: Mapping[str, Any], dest: Path) -> Path:
    blob_id, size, key, header, want_plain = _parse_descriptor(descriptor)
    dec = Decryptor(key, header)
    path = f"{BLOBS_PATH}/{blob_id}"
    headers = client.signed_headers("GET", path, "", b"")
    url = URL(client.base_url + path, encoded=True)
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    cipher_hash, plain_hash = hashlib.sha256(), hashlib.sha256()
    received = 0
    try:
        with partial.open("wb") as out:
            async with client._http().get(url, headers=headers) as resp:
                if resp.status >= 400:
                    await client.read_json(resp)  # raises HubError with the problem
                buffer = bytearray()
                async for piece in resp.content.iter_chunked(CIPHER_CHUNK):
                    received += len(piece)
                    if received > size:
                        raise EnvelopeError("the blob is longer than its descriptor says")
                    cipher_hash.update(piece)
                    buffer += piece
                    # Keep one full chunk back: only the end of the body tells whether
                    # a full-size chunk is the last one.
                    while len(buffer) > CIPHER_CHUNK:
                        plain = dec.pull(bytes(buffer[:CIPHER_CHUNK]))
                        del buffer[:CIPHER_CHUNK]
                        plain_hash.update(plain)
                        out.write(plain)
                if buffer:
                    plain = dec.pull(bytes(buffer))
                    plain_hash.update(plain)
                    out.write(plain)
            if not dec.finished:
                raise EnvelopeError("the attachment ended without its FINAL chunk")
            if received != size or cipher_hash.hexdigest() != blob_id:
                raise EnvelopeError("the blob is not the one the descriptor names")
            if plain_hash.digest() != want_plain:
                raise EnvelopeError("the attachment's plaintext hash does not match")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    return dest


def with_attachments(
    body: Mapping[str, Any], attachments: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    if "attachments" in body:
        raise ValueError("pass attachments separately, not inside the body")
    for a in attachments:
        missing = [f for f in DESCRIPTOR_FIELDS if f not in a]
        if missing:
            raise ValueError(f"attachment descriptor lacks {missing}")
    return {**body, "attachments": [dict(a) for a in attachments]}


async def seal_each(
    client: HubClient,
    recipients: Sequence[str],
    *,
    kind: str,
    exchange_id: str,
    case_ref: str,
    subject_ref: str,
    body: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The same body sealed to each recipient separately (dat-requests, messages)."""
    return [
        await client.seal_to(
            org,
            kind=kind,
            exchange_id=exchange_id,
            case_ref=case_ref,
            subject_ref=subject_ref,
            body=body,
        )
        for org in recipients
    ]


async def send_message(
    client: HubClient,
    case_ref: str,
    recipients: Sequence[str],
    body: Mapping[str, Any],
    *,
    subject_ref: str = "",
    attachments: Sequence[Mapping[str, Any]] = (),
    exchange_id: str | None = None,
) -> dict[str, Any]:
    envelopes = await seal_each(
        client,
        recipients,
        kind="message",
        exchange_id=exchange_id or str(uuid.uuid4()),
        case_ref=case_ref,
        subject_ref=subject_ref,
        body=with_attachments(body, attachments),
    )
    return await client.call(
        "POST",
        "/api/v1/messages",
        body={
            "case_ref": case_ref,
            "subject_ref": subject_ref,
            "envelopes": envelopes,
            "blobs": [str(a["blob_id"]) for a in attachments],
        },
    )


async def region_zvh(client: HubClient) -> str:
    """The region's ZVH organisation, found in the directory by its role."""
    for refresh in (False, True):
        peers = await client.directory(refresh=refresh)
        found = sorted(p.org for p in peers.values() if p.role == "zvh" and p.status == "active")
        if len(found) == 1:
            return found[0]
    raise HubError(
        404, {"code": "not-found", "detail": f"expected one ZVH organisation, found {len(found)}"}
    )


async def send_referral(
    client: HubClient,
    body: Mapping[str, Any],
    *,
    attachments: Sequence[Mapping[str, Any]] = (),
    exchange_id: str | None = None,
    to: str | None = None,
) -> dict[str, Any]:
    xid = exchange_id or str(uuid.uuid4())
    envelope = await client.seal_to(
        to or await region_zvh(client),
        kind="referral",
        exchange_id=xid,
        case_ref="",
        subject_ref="",
        body=with_attachments(body, attachments),
    )
    return await client.call(
        "POST",
        "/api/v1/referrals",
        body={"envelope": envelope, "blobs": [str(a["blob_id"]) for a in attachments]},
    )


def check_attachments(body: Mapping[str, Any] | None, blobs: object) -> None:
    """On receipt: every attachment the sealed body describes must be a blob the hub
    lets us fetch (listed in the inbox message), and well formed."""
    if body is None or "attachments" not in body:
        return
    listed = set(blobs) if isinstance(blobs, list) else set()
    attachments = body["attachments"]
    if not isinstance(attachments, list):
        raise EnvelopeError("attachments is not a list")
    for a in attachments:
        if not isinstance(a, Mapping):
            raise EnvelopeError("attachment descriptor malformed")
        blob_id, *_ = _parse_descriptor(a)
        if blob_id not in listed:
            raise EnvelopeError("an attachment the hub did not list")
