"""Attachment blobs (PROTOCOL §4.1): accept ciphertext uploads, hand them to the
recipients of the messages that name them, and delete them.

The hub only ever sees ciphertext, and never a whole blob in memory: an upload is
streamed to a temporary file while it is counted and hashed; it is kept only if
it stayed under the size limit and its SHA-256 is the one the signed
Content-Digest claimed (else the file is deleted and the caller gets 413 or 401).
A blob can be fetched only by an organisation that is a recipient of a message or
referral naming it; to everybody else it does not exist (404, never 403, so its
existence does not leak). It is deleted when every recipient has fetched it to the
end and acknowledged the inbox message that carried it, when nothing referenced
it within the grace period, or at retention.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.clock import Clock
from gateway.config import MessageSettings
from gateway.crypto.httpsig import digest_matches
from gateway.errors import (
    DenyCode,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    StorageFull,
    Unauthenticated,
)
from gateway.policy.access import EXCHANGE_ROLES
from gateway.services.auth import RequestAuth
from gateway.services.outcome import Done, Outcome, deny, settle
from gateway.storage import message_store
from gateway.storage.blob_files import BlobFiles, is_blob_id
from gateway.storage.database import Database, Tx

log = logging.getLogger(__name__)
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class BlobTotals:
    count: int
    bytes: int
    oldest_unfetched_ms: int | None = None  # upload time of the oldest blob not fetched


class BlobService:
    def __init__(
        self,
        db: Database,
        files: BlobFiles,
        clock: Clock,
        settings: MessageSettings,
        *,
        on_totals: Callable[[BlobTotals], None] | None = None,
    ) -> None:
        self._db = db
        self.files = files
        self._clock = clock
        self._settings = settings
        self._on_totals = on_totals
        self._stored_bytes = 0  # as of the last publish (the sweep runs one at start)

    @property
    def max_bytes(self) -> int:
        return self._settings.max_blob_bytes

    @property
    def budget_bytes(self) -> int:
        return self._settings.blob_store_budget_bytes

    def _full(self) -> StorageFull:
        return StorageFull(
            "The hub's attachment store is full; try again after the recipients fetched"
            " what is waiting for them."
        )

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"An attachment may be at most {self.max_bytes} bytes (encrypted) at this hub."
        )

    # -- upload ------------------------------------------------------------------

    async def upload(
        self, auth: RequestAuth, content_length: int | None, chunks: AsyncIterable[bytes]
    ) -> Done:
        claimed = auth.body_sha256
        if claimed is None:  # the middleware verified this request as streamed
            raise Unauthenticated("blob upload without a streamed digest")
        if auth.caller.role not in EXCHANGE_ROLES:
            return await self._refuse_role(auth)
        if content_length is not None and content_length > self.max_bytes:
            raise self._too_large()
        # The budget is checked against the totals of the last publish: concurrent
        # uploads may overshoot it by at most their own sizes.
        if self._stored_bytes + (content_length or 0) > self.budget_bytes:
            raise self._full()
        upload = self.files.start()
        try:
            async for chunk in chunks:
                if upload.size + len(chunk) > self.max_bytes:
                    raise self._too_large()
                if self._stored_bytes + upload.size + len(chunk) > self.budget_bytes:
                    raise self._full()
                upload.write(chunk)
            if upload.size == 0:
                raise InvalidRequest(
                    "An attachment blob is never empty.",
                    errors=[{"loc": ["body"], "msg": "empty"}],
                )
            if not digest_matches(claimed, upload.digest()):
                raise Unauthenticated("content-digest mismatch")
            blob_id = upload.digest().hex()
            await upload.commit(self.files.path(blob_id))
        except BaseException:
            upload.abort()
            raise
        size = upload.size
        now = self._clock.now_ms()

        def record(tx: Tx) -> None:
            auth.persist(tx)
            message_store.insert_blob(tx, blob_id=blob_id, uploader=auth.org, size=size, now_ms=now)

        await self._db.write("blob_upload", record)
        return Done(201, {"blob_id": blob_id, "size": size})

    async def _refuse_role(self, auth: RequestAuth) -> Done:
        """Only organisations that exchange may store blobs (a recorded 403)."""
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            return deny(tx, DenyCode.FORBIDDEN_ROLE, action="blob-upload", org=auth.org, now_ms=now)

        return settle(await self._db.write("blob_upload", job))

    # -- download ----------------------------------------------------------------

    async def locate(self, auth: RequestAuth, blob_id: str) -> tuple[Path, int]:
        """The file to stream to `auth`, or 404 (unknown and not-yours look the same)."""
        if not is_blob_id(blob_id):
            raise NotFound("Unknown blob.")
        size = await self._db.read(
            "blob_locate", functools.partial(_size_for, blob_id=blob_id, org=auth.org)
        )
        if size is None or not self.files.exists(blob_id):
            raise NotFound("Unknown blob.")
        return self.files.path(blob_id), size

    async def fetched(self, auth: RequestAuth, blob_id: str) -> None:
        """`auth` received the whole blob; delete it if that was the last recipient."""
        now = self._clock.now_ms()

        def job(tx: Tx) -> list[str]:
            message_store.mark_fetched(tx, blob_id, auth.org, now)
            return self._drop_completed(tx, [blob_id])

        await self._db.write("blob_fetched", job)

    def on_ack(self, tx: Tx, org: str, message_ids: Sequence[int], now_ms: int) -> None:
        """Inside the inbox ack job: the carrying messages were acknowledged."""
        touched = message_store.mark_acked(tx, org, message_ids, now_ms)
        if touched:
            self._drop_completed(tx, touched)

    def _drop_completed(self, tx: Tx, blob_ids: Sequence[str]) -> list[str]:
        done = message_store.completed_blobs(tx, blob_ids)
        if done:
            message_store.delete_blob_rows(tx, done)
            tx.on_commit(functools.partial(self.delete_files, done))
        return done

    def delete_files(self, blob_ids: Sequence[str]) -> None:
        """After the rows are gone (committed): the files go too."""
        for blob_id in blob_ids:
            self.files.delete(blob_id)
        if blob_ids:
            log.info("blobs deleted", extra={"count": len(blob_ids)})

    # -- the sweep -----------------------------------------------------------------

    async def sweep(self) -> list[str]:
        """Delete unreferenced and expired blobs, and files without a row (an upload
        whose row never committed); publish the totals."""
        now = self._clock.now_ms()
        unreferenced_before = now - int(self._settings.blob_unreferenced_s * 1000)
        created_before = now - int(self._settings.blob_days * DAY_MS)

        def job(tx: Tx) -> tuple[list[str], set[str]]:
            gone = message_store.expired_blobs(
                tx, unreferenced_before_ms=unreferenced_before, created_before_ms=created_before
            )
            message_store.delete_blob_rows(tx, gone)
            return gone, message_store.known_blob_ids(tx)

        gone, known = await self._db.write("blob_sweep", job)
        self.delete_files(gone)
        self.files.drop_stale_pins()
        for name in list(self.files.names()):
            if name not in known:
                path = self.files.path(name)
                with contextlib.suppress(FileNotFoundError):
                    # Only orphans older than the grace period: a fresh upload's row
                    # may be a moment behind its file.
                    if path.stat().st_mtime * 1000 < unreferenced_before:
                        path.unlink()
        await self.publish()
        return gone

    async def publish(self) -> BlobTotals:
        count, size, oldest = await self._db.read("blob_totals", message_store.blob_totals)
        totals = BlobTotals(count, size, oldest)
        self._stored_bytes = size
        if self._on_totals is not None:
            self._on_totals(totals)
        return totals


def _size_for(tx: Tx, *, blob_id: str, org: str) -> int | None:
    return message_store.blob_size_for(tx, blob_id, org)
