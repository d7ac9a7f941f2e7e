"""A hub's link to the national check: wiring and background tasks (part of the
hub's composition root).

With a `[national]` section the hub gets a signed client of the pseudonymiser and
the index, the index sync (outbox pushes, renewals) and, when a canary is pinned,
the canary check; without one, a `NationalService` that answers 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.config import Settings
from gateway.crypto.keys import OrgKeys
from gateway.federation.client import NationalClient
from gateway.metrics import Metrics
from gateway.services.directory import Directory
from gateway.services.index_sync import IndexSync
from gateway.services.national import NationalService
from gateway.storage.database import Database


@dataclass(slots=True)
class NationalLink:
    client: NationalClient
    sync: IndexSync
    service: NationalService
    canary: bool

    async def start(self) -> list[asyncio.Task[None]]:
        await self.sync.start()
        tasks = [asyncio.create_task(self.sync.run(), name="index-sync")]
        if self.canary:
            tasks.append(asyncio.create_task(self.service.run_canary(), name="canary"))
        return tasks

    async def close(self) -> None:
        await self.client.close()


def build_national(
    settings: Settings,
    *,
    keys: OrgKeys,
    clock: Clock,
    metrics: Metrics,
    db: Database,
    directory: Directory,
    themes: Iterable[str],
) -> tuple[NationalService, NationalLink | None]:
    national = settings.national
    if national is None:
        service = NationalService(
            db,
            directory,
            clock,
            metrics,
            hub_org=keys.org,
            themes=themes,
            settings=None,
            oprf=None,
            index=None,
        )
        return service, None
    client = NationalClient(
        keys,
        clock,
        metrics,
        pseudonymiser_url=national.pseudonymiser_url,
        index_url=national.index_url,
        timeout_s=national.timeout_s,
    )
    service = NationalService(
        db,
        directory,
        clock,
        metrics,
        hub_org=keys.org,
        themes=themes,
        settings=national,
        oprf=client,
        index=client,
    )
    sync = IndexSync(
        db,
        clock,
        metrics,
        client,
        hub_org=keys.org,
        lease_days=national.lease_days,
        renew_interval_s=national.renew_interval_s,
        retention_days=settings.retention.case_data_days,
    )
    return service, NationalLink(client, sync, service, national.canary_pid is not None)
