"""HTTP routes of secure case messages, referrals and attachment blobs (issue #8;
PROTOCOL §4.1 and the extensions in docs/protocol.md). Thin: parse, call a service,
render.

Blobs are streamed both ways in small chunks, so a 25 MB attachment never sits
whole in the hub's memory: the upload's body is handed to the service chunk by
chunk (the middleware verified the signature over its Content-Digest without
reading it), and a download is read from its file and written out piece by piece.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    StorageFull,
    Unauthenticated,
)
from gateway.models import MessageIn, ReferralIn
from gateway.web.hub_routes import done, parse
from gateway.web.state import HUB, auth_of

routes = web.RouteTableDef()

# zvh_gateway_blob_uploads_total{outcome}: what the alerts watch (413s, a full store).
_UPLOAD_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (PayloadTooLarge, "too-large"),
    (StorageFull, "storage-full"),
    (Unauthenticated, "digest-mismatch"),
    (InvalidRequest, "invalid"),
    (Forbidden, "refused"),
)


def upload_outcome(exc: BaseException) -> str:
    for kind, outcome in _UPLOAD_OUTCOMES:
        if isinstance(exc, kind):
            return outcome
    return "cut-off"  # the client went away, or the upload failed at the hub


UPLOAD_CHUNK = 64 * 1024
DOWNLOAD_CHUNK = 256 * 1024


@routes.put("/api/v1/blobs")
async def put_blob(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    received = hub.metrics.blob_transfer.labels("upload")

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
            received.inc(len(chunk))
            yield chunk

    uploads = hub.metrics.blob_uploads
    try:
        result = await hub.blobs.upload(auth_of(request), request.content_length, chunks())
    except BaseException as exc:
        uploads.labels(upload_outcome(exc)).inc()
        raise
    uploads.labels("stored").inc()
    await hub.blobs.publish()
    return done(result)


@routes.get("/api/v1/blobs/{blob_id}")
async def get_blob(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    auth = auth_of(request)
    blob_id = request.match_info["blob_id"]
    path, _ = await hub.blobs.locate(auth, blob_id)
    try:
        file = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError as exc:  # deleted a moment ago (its last recipient acked)
        raise NotFound("Unknown blob.") from exc
    sent = hub.metrics.blob_transfer.labels("download")
    try:
        response = web.StreamResponse(
            status=200,
            headers={"Cache-Control": "no-store", "Content-Type": "application/octet-stream"},
        )
        response.content_length = os.fstat(file.fileno()).st_size
        await response.prepare(request)
        while chunk := await asyncio.to_thread(file.read, DOWNLOAD_CHUNK):
            await response.write(chunk)
            sent.inc(len(chunk))
        await response.write_eof()
    finally:
        await asyncio.to_thread(file.close)
    # Only a blob streamed to the end counts as fetched (a cut-off download can be
    # repeated until the recipient acknowledges the message that carried it).
    await hub.blobs.fetched(auth, blob_id)
    await hub.blobs.publish()
    return response


@routes.post("/api/v1/messages")
async def post_message(request: web.Request) -> web.Response:
    req, raw = parse(request, MessageIn)
    return done(await request.app[HUB].messages.submit_message(auth_of(request), req, raw))


@routes.post("/api/v1/referrals")
async def post_referral(request: web.Request) -> web.Response:
    req, raw = parse(request, ReferralIn)
    return done(await request.app[HUB].messages.submit_referral(auth_of(request), req, raw))
