"""The hub's directory of organisations and their keys, cached in memory.

Signature checks run thousands of times a second, so they read an immutable
in-memory snapshot. The snapshot is reloaded when the database's directory
version changes (the admin CLI bumps it when it adds, rotates or revokes a key),
polled every `refresh_s`, and immediately when a request names an unknown key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.clock import Clock
from gateway.crypto.encoding import b64u_encode
from gateway.storage import stores
from gateway.storage.database import Database
from gateway.storage.records import OrgRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    orgs: Mapping[str, OrgRecord]


class Directory:
    def __init__(self, db: Database, clock: Clock, *, refresh_s: float = 1.0) -> None:
        self._db = db
        self._clock = clock
        self._refresh_s = refresh_s
        self._snapshot = Snapshot(-1, MappingProxyType({}))
        self._last_miss_reload = 0.0
        self._lock = asyncio.Lock()

    @property
    def orgs(self) -> Mapping[str, OrgRecord]:
        return self._snapshot.orgs

    def get(self, org: str) -> OrgRecord | None:
        return self._snapshot.orgs.get(org)

    async def reload(self, *, force: bool = False) -> bool:
        async with self._lock:
            version = await self._db.read("directory_version", stores.directory_version)
            if not force and version == self._snapshot.version:
                return False
            records = await self._db.read("directory_load", stores.list_orgs)
            self._snapshot = Snapshot(version, MappingProxyType({r.org: r for r in records}))
            log.info("directory loaded", extra={"organisations": len(records)})
            return True

    async def run_refresher(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.reload()
            except Exception:
                log.exception("directory refresh failed")

    def signing_key(self, org: str, kid: str, now_ms: int) -> bytes | None:
        """The Ed25519 key a request names, if it is current: known, active, unexpired."""
        rec = self._snapshot.orgs.get(org)
        if rec is None or rec.signing_kid != kid or rec.status != "active":
            return None
        if rec.valid_until_ms is not None and now_ms > rec.valid_until_ms:
            return None
        return rec.signing_key

    async def signing_key_or_reload(self, org: str, kid: str) -> bytes | None:
        now_ms = self._clock.now_ms()
        key = self.signing_key(org, kid, now_ms)
        if key is None and self._clock.monotonic() - self._last_miss_reload > self._refresh_s:
            # A key added or rotated a moment ago: look again, at most once per period,
            # so unknown-key floods cannot turn into a database read per request.
            self._last_miss_reload = self._clock.monotonic()
            if await self.reload():
                key = self.signing_key(org, kid, self._clock.now_ms())
        return key


def org_json(rec: OrgRecord) -> dict[str, object]:
    """One organisation as `GET /api/v1/directory` lists it (PROTOCOL §7)."""
    return {
        "org": rec.org,
        "role": rec.role,
        "domain": rec.domain,
        "name": rec.name,
        "signing_key": b64u_encode(rec.signing_key),
        "signing_kid": rec.signing_kid,
        "encryption_key": b64u_encode(rec.encryption_key),
        "encryption_kid": rec.encryption_kid,
        "status": rec.status,
        "valid_until_ms": rec.valid_until_ms,
    }
