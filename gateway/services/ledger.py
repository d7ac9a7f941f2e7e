"""The hub's side of the ledger: tree head, signed checkpoints, proofs, entries.

Appends happen inside the storage jobs of each exchange step; this service keeps
an in-memory compact tree in step with what is committed, signs a C2SP checkpoint
whenever entries arrived (at most `interval_s` after them) and at least every
`idle_s` when nothing happens, and serves proofs computed on the read thread.
Before signing it checks the new head is consistent with the previous signed one
against the stored leaves, so a corrupted table stops the checkpoints (a stale
checkpoint is what operators alert on) instead of being signed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock
from gateway.crypto.canonical import canonical_json
from gateway.crypto.encoding import b64u_encode
from gateway.crypto.keys import OrgKeys, sign_record
from gateway.errors import InvalidRequest, NotFound
from gateway.ledger.checkpoint import (
    Checkpoint,
    chain_link,
    origin_for,
    sign_checkpoint,
    verify_checkpoint,
)
from gateway.ledger.merkle import (
    CompactTree,
    SubtreeCache,
    consistency_proof,
    inclusion_proof,
    subtree_root,
    verify_consistency,
)
from gateway.storage import ledger_store
from gateway.storage.database import Database, Tx
from gateway.storage.ledger_store import LedgerHashSource, StoredCheckpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SignedHead:
    size: int
    root: bytes
    time_ms: int
    note: str


def _bad(loc: str, msg: str) -> InvalidRequest:
    return InvalidRequest("Invalid query.", errors=[{"loc": ["query", loc], "msg": msg}])


class LedgerService:
    def __init__(
        self,
        db: Database,
        keys: OrgKeys,
        clock: Clock,
        *,
        interval_s: float = 2.0,
        idle_s: float = 30.0,
        cache_min_height: int = 8,
    ) -> None:
        self._db = db
        self._keys = keys
        self._clock = clock
        self._interval_s = interval_s
        self._idle_s = idle_s
        self.origin = origin_for(keys.org)
        self._tree = CompactTree()
        self._cache = SubtreeCache(cache_min_height)
        self._head: SignedHead | None = None
        self._last_sign = 0.0
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._warm_task: asyncio.Task[None] | None = None
        self._last_stored: tuple[int, bytes] | None = None

    @property
    def head(self) -> SignedHead | None:
        return self._head

    @property
    def tree_size(self) -> int:
        return self._tree.size

    def notify_appended(self) -> None:
        """Called after each commit that appended entries."""
        self._dirty.set()

    # -- start-up ------------------------------------------------------------

    async def start(self) -> None:
        """Restore the head from the last stored checkpoint and catch up on later leaves.

        The stored tree state is only trusted when it reproduces the root of the note
        we signed; otherwise the tree is rebuilt from the leaves, and if those no longer
        give the signed root the hub refuses to sign (see `sign`)."""
        stored = await self._db.read(
            "checkpoint_latest", lambda tx: ledger_store.latest_checkpoint(tx.conn)
        )
        if stored is not None:
            self._last_stored = (stored.size, stored.root)
            cp = self._own_note(stored.note)
            tree = _tree_or_none(stored.tree)
            if cp is None or tree is None or tree.size != cp.size or tree.root() != cp.root:
                log.error("stored checkpoint state does not match its signed note; rebuilding")
                tree = CompactTree()
                size = stored.size if cp is None else cp.size
                await self._db.read("ledger_rebuild", lambda tx: self._catch_up(tx, tree, size))
            self._tree = tree
            if cp is not None:
                self._head = SignedHead(cp.size, cp.root, cp.time_ms, stored.note)
        await self.sign(force=True)
        # Warm the proof cache in the background: complete subtrees never change.
        self._warm_task = asyncio.get_running_loop().create_task(
            self._warm_cache(), name="ledger-cache-warm"
        )

    def _own_note(self, note: str) -> Checkpoint | None:
        try:
            return verify_checkpoint(note, self.origin, self._keys.signing_key)
        except ValueError:
            return None

    async def stop(self) -> None:
        if self._warm_task is not None:
            self._warm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm_task
            self._warm_task = None

    async def _warm_cache(self) -> None:
        size = self._tree.size
        start = 0
        try:
            for bit in reversed(range(size.bit_length())):
                width = 1 << bit
                if size & width:
                    a, b = start, start + width
                    await self._db.read("ledger_warm", functools.partial(self._warm, a=a, b=b))
                    start += width
        except Exception:
            log.exception("ledger cache warm-up failed")

    def _warm(self, tx: Tx, *, a: int, b: int) -> bytes:
        return subtree_root(LedgerHashSource(tx.conn), a, b, self._cache)

    # -- checkpoints -----------------------------------------------------------

    async def sign(self, *, force: bool = False) -> SignedHead | None:
        async with self._lock:
            committed = await self._db.read(
                "ledger_size", lambda tx: ledger_store.ledger_size(tx.conn)
            )
            if committed > self._tree.size:
                tree = self._tree.copy()
                await self._db.read(
                    "ledger_catch_up", lambda tx: self._catch_up(tx, tree, committed)
                )
                self._tree = tree
            head = self._head
            idle = self._clock.monotonic() - self._last_sign
            if (
                head is not None
                and head.size == self._tree.size
                and not force
                # Look-ups happen every interval: re-sign early enough that the gap
                # between signatures never exceeds idle_s.
                and idle < self._idle_s - self._interval_s
            ):
                return head
            root = self._tree.root()
            if head is not None and head.size == self._tree.size and head.root != root:
                log.critical(
                    "ledger leaves no longer give the signed root; not signing",
                    extra={"signed_size": head.size},
                )
                return None
            if head is not None and head.size < self._tree.size:
                first, second, old_root = head.size, self._tree.size, head.root
                ok = await self._db.read(
                    "ledger_consistency",
                    lambda tx: verify_consistency(
                        first,
                        second,
                        old_root,
                        root,
                        consistency_proof(first, second, LedgerHashSource(tx.conn), self._cache),
                    ),
                )
                if not ok:
                    log.critical(
                        "ledger is not consistent with the last checkpoint; not signing",
                        extra={"signed_size": first, "size": second},
                    )
                    return None
            now = self._clock.now_ms()
            cp = Checkpoint(self.origin, self._tree.size, root, now)
            note = sign_checkpoint(self._keys, cp)
            link = chain_link(self.origin, self._last_stored, cp)
            stored = StoredCheckpoint(
                cp.size,
                now,
                root,
                note,
                self._tree.to_bytes(),
                canonical_json(link).decode(),
                sign_record(self._keys, link),
            )
            if head is None or head.size != cp.size:
                # Only new sizes are stored; idle re-signatures just refresh the served note.
                await self._db.write(
                    "checkpoint", lambda tx: ledger_store.insert_checkpoint(tx.conn, stored)
                )
                self._last_stored = (cp.size, root)
            self._head = SignedHead(cp.size, root, now, note)
            self._last_sign = self._clock.monotonic()
            return self._head

    def _catch_up(self, tx: Tx, tree: CompactTree, upto: int) -> None:
        while tree.size < upto:
            hashes = ledger_store.leaf_hashes(tx.conn, tree.size, min(upto, tree.size + 4096))
            if not hashes:
                break
            for digest in hashes:
                tree.append(digest, self._cache)

    async def run(self) -> None:
        """Look every `interval_s`: sign when entries arrived (also ones an offline tool
        appended) and re-sign when the last signature is `idle_s` old."""
        while True:
            await asyncio.sleep(self._interval_s)
            self._dirty.clear()
            try:
                await self.sign()
            except Exception:
                log.exception("checkpoint signing failed")

    # -- proofs and entries ------------------------------------------------------

    def _check_size(self, size: int, name: str) -> None:
        if size > self._tree.size:
            raise _bad(name, "beyond the ledger's signed size")

    async def inclusion(self, index: int, size: int) -> dict[str, Any]:
        self._check_size(size, "size")
        if not 0 <= index < size:
            raise _bad("index", "must be below size")

        def prove(tx: Tx) -> tuple[bytes, list[bytes]]:
            source = LedgerHashSource(tx.conn)
            return source.leaf_hashes(index, index + 1)[0], inclusion_proof(
                index, size, source, self._cache
            )

        digest, path = await self._db.read("ledger_inclusion", prove)
        return {
            "index": index,
            "size": size,
            "leaf_hash": digest.hex(),
            "path": [p.hex() for p in path],
        }

    async def consistency(self, first: int, second: int) -> dict[str, Any]:
        self._check_size(second, "second")
        if not 0 <= first <= second:
            raise _bad("first", "must be between 0 and second")
        path = await self._db.read(
            "ledger_consistency",
            lambda tx: consistency_proof(first, second, LedgerHashSource(tx.conn), self._cache),
        )
        return {"first": first, "second": second, "path": [p.hex() for p in path]}

    async def entry(self, index: int, org: str) -> dict[str, Any]:
        def read(tx: Tx) -> tuple[ledger_store.LedgerRow, set[str]] | None:
            rows = ledger_store.read_entries(tx.conn, index, index + 1)
            if not rows:
                return None
            return rows[0], ledger_store.entry_actors(tx.conn, index)

        found = await self._db.read("ledger_entry", read)
        if found is None:
            raise NotFound("No such ledger entry.")
        row, actors = found
        # Bodies name cases and organisations: only the entry's own actors may read them.
        mine = org in actors
        return {
            "index": row.index,
            "leaf_data": b64u_encode(row.leaf_data),
            "body": row.body if mine else None,
            "salt": row.salt.hex() if mine and row.salt is not None else None,
        }


def _tree_or_none(data: bytes) -> CompactTree | None:
    try:
        return CompactTree.from_bytes(data)
    except ValueError:
        return None
