"""Operations use cases: backup and restore of a hub's database, the hub's light
ledger self-check, and the expiry dates its alerts watch.

Backup and restore run from the CLI beside (backup) or instead of (restore) a
running hub. A restore installs a database only after its ledger verified against
the hub's own key, exactly as `zvh-gateway ledger verify` does, and only when no
other process has the database open.

Must not: touch SQLite itself (gateway/storage/backup.py does), or know about HTTP.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.clock import Clock
from gateway.config import Settings
from gateway.crypto.keys import OrgKeys
from gateway.errors import ConfigError
from gateway.ledger.checkpoint import verify_checkpoint
from gateway.ledger.merkle import CompactTree, verify_consistency, verify_inclusion
from gateway.ledger.verify import VerifyReport
from gateway.services.admin import verify_file
from gateway.services.ledger import LedgerService, SignedHead
from gateway.storage import ledger_store, policy_store
from gateway.storage.backup import (
    DatabaseInfo,
    backup_database,
    companions,
    exclusive_database,
    install_database,
)
from gateway.storage.blob_backup import (
    BlobCopyReport,
    blobs_folder_of,
    pin_blobs,
    restore_blobs,
    snapshot_blobs,
    write_backup_blobs,
)
from gateway.storage.blob_files import BlobFiles
from gateway.storage.database import Database, Tx
from gateway.storage.records import OrgRecord

# -- backup and restore ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupReport:
    info: DatabaseInfo
    blobs: BlobCopyReport  # the attachment blobs the snapshot names, in `<out>.blobs/`


def backup(settings: Settings, out: Path, *, force: bool = False) -> BackupReport:
    """Write a consistent copy of the hub's database to `out` (mode 0600), online, and
    the blob files its rows name to `<out>.blobs/`, each checked against its id.

    The blob files present are pinned (hard links) before the snapshot starts, so a
    blob the hub deletes while the copy runs is still in the backup if the snapshot
    names it; blobs uploaded after the snapshot are not in it, like their rows.
    """
    database = settings.node.database
    if out.resolve() == database.resolve():
        raise ConfigError("--out names the hub's own database")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; give --force to replace it")
    live = BlobFiles.next_to(database).folder
    with pin_blobs(live) as pin:
        info = backup_database(database, out)
        blobs = write_backup_blobs(snapshot_blobs(out), [pin, live], blobs_folder_of(out))
    return BackupReport(info, blobs)


@dataclass(frozen=True, slots=True)
class RestoreReport:
    source: Path
    database: Path
    info: DatabaseInfo  # of the restored copy
    verify: VerifyReport
    installed: bool
    previous: Path | None  # where the replaced database is kept
    blobs: BlobCopyReport | None = None  # when installed


def restore(
    settings: Settings, source: Path, clock: Clock, *, force: bool = False
) -> RestoreReport:
    """Replace the hub's database by the backup `source`, atomically, if its ledger
    verifies against the hub's key (from the hub's key file, never from the backup).

    The backup is first copied beside the database (a consistent, checked copy; the
    backup file itself is never changed) and verified there; a copy that fails is
    removed and nothing is replaced. The replaced database stays beside it as
    `<name>.replaced-<ms>`. The blobs the restored rows name are copied from
    `<source>.blobs/` into the hub's blob folder, each checked against its id; the
    report names the missing and corrupt ones (their messages' recipients get 404).
    """
    target = settings.node.database
    if not source.is_file():
        raise ConfigError(f"no such backup file: {source}")
    if source.resolve() == target.resolve():
        raise ConfigError("--from names the hub's own database")
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; give --force to replace it")
    keys = OrgKeys.load(settings.node.key_file)
    staged = target.with_name(f".{target.name}.restore-{os.getpid()}")
    try:
        info = backup_database(source, staged)
        report = verify_file(staged, keys.signing_key, settings.node.org)
        if not report.ok:
            return RestoreReport(source, target, info, report, installed=False, previous=None)
        previous = (
            target.with_name(f"{target.name}.replaced-{clock.now_ms()}")
            if target.exists()
            else None
        )
        with exclusive_database(target):
            blobs = restore_blobs(
                snapshot_blobs(staged),
                blobs_folder_of(source),
                BlobFiles.next_to(target).folder,
            )
            install_database(staged, target, keep_previous=previous)
        return RestoreReport(source, target, info, report, True, previous, blobs)
    finally:
        for leftover in [staged, *companions(staged)]:
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)


# -- the hub's light ledger self-check ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelfCheck:
    ok: bool
    size: int
    head: SignedHead | None
    problem: str | None = None


def _fail(size: int, problem: str) -> SelfCheck:
    return SelfCheck(False, size, None, problem)


async def check_ledger(
    ledger: LedgerService, db: Database, public_key: bytes, previous: SignedHead | None
) -> SelfCheck:
    """A cheap, O(log n) check of what the hub serves and would resume from:

    - the served checkpoint verifies with the hub's key and names the head it claims;
    - the newest stored checkpoint verifies too, and its stored tree frontier has its
      size and root (a restart resumes from that frontier);
    - the last leaf of the served head, read from the table, is included under the
      head's root (the in-memory tree, the proof cache and the stored leaves agree);
    - the head extends the head of the previous passed check (consistency proof).

    The full recomputation is `zvh-gateway ledger verify` (offline) or a restore.
    """
    head = ledger.head
    if head is None:
        return _fail(0, "no signed checkpoint")
    try:
        served = verify_checkpoint(head.note, ledger.origin, public_key)
    except ValueError as exc:
        return _fail(head.size, f"served checkpoint: {exc}")
    if (served.size, served.root) != (head.size, head.root):
        return _fail(head.size, "served checkpoint does not name the hub's head")

    stored = await db.read("ledger_self_check", lambda tx: ledger_store.latest_checkpoint(tx.conn))
    if stored is None:
        return _fail(head.size, "no stored checkpoint")
    try:
        checkpoint = verify_checkpoint(stored.note, ledger.origin, public_key)
        frontier = CompactTree.from_bytes(stored.tree)
    except ValueError as exc:
        return _fail(head.size, f"stored checkpoint: {exc}")
    if (checkpoint.size, checkpoint.root) != (stored.size, stored.root) or (
        frontier.size,
        frontier.root(),
    ) != (stored.size, stored.root):
        return _fail(head.size, "stored checkpoint does not match its tree")
    if stored.size > head.size or (stored.size == head.size and stored.root != head.root):
        return _fail(head.size, "stored checkpoint is not the served one")

    if head.size > 0:
        proof = await ledger.inclusion(head.size - 1, head.size)
        leaf = bytes.fromhex(proof["leaf_hash"])
        path = [bytes.fromhex(p) for p in proof["path"]]
        if not verify_inclusion(head.size - 1, head.size, leaf, path, head.root):
            return _fail(head.size, "the newest leaf is not under the signed root")
    if previous is not None:
        if previous.size > head.size:
            return _fail(head.size, "the ledger shrank since the last check")
        path = []
        if 0 < previous.size < head.size:
            proof = await ledger.consistency(previous.size, head.size)
            path = [bytes.fromhex(p) for p in proof["path"]]
        if not verify_consistency(previous.size, head.size, previous.root, head.root, path):
            return _fail(head.size, "the head does not extend the previously checked head")
    return SelfCheck(True, head.size, head)


# -- expiry dates for the alerts -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expiries:
    """Epoch seconds, by organisation id or protocol id (closed sets: the directory)."""

    keys: dict[str, float]
    accessions: dict[str, float]
    protocols: dict[str, float]


def expiries(tx: Tx, *, now_ms: int, orgs: Iterable[OrgRecord]) -> Expiries:
    """When active keys, the protocol in force, and the accessions to it end.

    An accession ends with its protocol; only what has an end date is listed."""
    active = {o.org: o for o in orgs if o.status == "active"}
    keys = {
        org: rec.valid_until_ms / 1000
        for org, rec in active.items()
        if rec.valid_until_ms is not None
    }
    protocols: dict[str, float] = {}
    accessions: dict[str, float] = {}
    current = policy_store.current_protocol_id(tx, now_ms)
    protocol = None if current is None else policy_store.get_protocol(tx, current)
    if protocol is not None and protocol.valid_until_ms is not None:
        until = protocol.valid_until_ms / 1000
        protocols[protocol.protocol_id] = until
        for row in policy_store.list_accessions(tx):
            if (
                row["protocol_id"] == protocol.protocol_id
                and row["revoked_ms"] is None
                and row["org"] in active
            ):
                accessions[str(row["org"])] = until
    return Expiries(keys, accessions, protocols)
