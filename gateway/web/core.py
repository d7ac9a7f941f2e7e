"""The parts every node builds the same way (hub, pseudonymiser, index): its keys,
database, directory, request authentication and ledger. One builder, so the roles
cannot drift apart in how they check signatures or sign checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.clock import Clock
from gateway.config import Settings
from gateway.crypto.keys import OrgKeys
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.services.auth import Authenticator, ReplayCache
from gateway.services.directory import Directory
from gateway.services.ledger import LedgerService
from gateway.storage.database import Database


@dataclass(frozen=True, slots=True)
class NodeCore:
    keys: OrgKeys
    db: Database
    directory: Directory
    replay: ReplayCache
    authenticator: Authenticator
    ledger: LedgerService


def build_core(settings: Settings, clock: Clock, metrics: Metrics) -> NodeCore:
    keys = OrgKeys.load(settings.node.key_file)
    if keys.org != settings.node.org:
        raise ConfigError(
            f"key file {settings.node.key_file} is for {keys.org!r}, not {settings.node.org!r}"
        )
    hub = settings.hub
    db = Database(settings.node.database, batch_max=hub.write_batch_max, observer=metrics)
    directory = Directory(db, clock, refresh_s=hub.directory_refresh_s)
    replay = ReplayCache()
    return NodeCore(
        keys=keys,
        db=db,
        directory=directory,
        replay=replay,
        authenticator=Authenticator(
            directory,
            replay,
            clock,
            authority=settings.authority,
            skew_s=hub.clock_skew_s,
            window_s=hub.nonce_window_s,
        ),
        ledger=LedgerService(
            db, keys, clock, interval_s=hub.checkpoint_interval_s, idle_s=hub.checkpoint_idle_s
        ),
    )
