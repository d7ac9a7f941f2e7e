"""`zvh-gateway backup` while the hub serves a load of dat-requests, and `restore`.

The backup is taken with the CLI in its own process while four senders keep posting;
the restore then replaces the stopped hub's database, and the restored ledger must
verify and hold every exchange acknowledged before the backup started. The smaller
tests run the use cases in-process: refusals, a tampered backup, the printed size.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.config import Settings
from gateway.crypto.keys import OrgKeys
from gateway.errors import ConfigError
from gateway.services import admin, ops
from gateway.storage.backup import BackupError, DatabaseInUse, describe_database
from gateway.web.hub_app import HubServer, build_hub
from tests.conftest import BSN, NAME, free_port, make_hub_dir
from tests.e2e.hubproc import REPO, Processes
from tests.ops.support import DatLoad, ledger_exchange_ids, make_ops_hub, open_case

CASE_REF = "ZVHOPS-BACKUP-0001"
SUBJECT_REF = "S1"
PERSON = {"bsn": BSN, "name": NAME}


async def run_cli(*args: str) -> tuple[int, str, str]:
    """`python -m gateway ARGS` without blocking the event loop (the load keeps going)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.e2e
@pytest.mark.slow
async def test_backup_under_load_restores_a_verified_ledger_with_every_acked_entry(
    tmp_path: Path, procs: Processes
) -> None:
    hub = make_ops_hub(tmp_path, procs)
    config = str(hub.setup.config)
    await open_case(hub, CASE_REF, SUBJECT_REF)
    load = DatLoad(hub, CASE_REF, SUBJECT_REF, PERSON)
    load.start()
    await load.wait_for(30)

    acked_before = set(load.acked)  # acknowledged before the backup started
    out = tmp_path / "backups" / "hub.sqlite3.bak"
    rc, stdout, stderr = await run_cli("backup", "--config", config, "--out", str(out))
    assert rc == 0, stderr
    during = len(load.acked) - len(acked_before)
    await load.wait_for(len(load.acked) + 10)  # the hub kept serving after the backup
    await load.finish()
    assert during >= 0

    info = describe_database(out)
    assert f"ledger size {info.ledger_size}," in stdout
    assert info.ledger_size >= len(acked_before)
    assert out.stat().st_mode & 0o077 == 0, "a backup holds everything: mode 0600"
    assert ledger_exchange_ids(out) >= acked_before

    # The hub is still running: a restore refuses to touch its database.
    rc, _, stderr = await run_cli("restore", "--config", config, "--from", str(out))
    assert rc == 2
    assert "give --force" in stderr
    rc, _, stderr = await run_cli("restore", "--config", config, "--from", str(out), "--force")
    assert rc == 1
    assert "in use" in stderr

    assert hub.proc.stop(signal.SIGTERM) == 0
    live_before_restore = ledger_exchange_ids(hub.settings.node.database)
    assert live_before_restore >= set(load.acked)
    rc, stdout, stderr = await run_cli("restore", "--config", config, "--from", str(out), "--force")
    assert rc == 0, stdout + stderr
    assert "ledger OK" in stdout
    restored = hub.settings.node.database
    assert ledger_exchange_ids(restored) >= acked_before
    report = admin.verify_file(restored, hub.hub_key(), hub.settings.node.org)
    assert report.ok, report
    assert report.entries == info.ledger_size
    assert not any(p.exists() for p in (Path(f"{restored}-wal"), Path(f"{restored}-shm")))
    (kept,) = restored.parent.glob(f"{restored.name}.replaced-*")
    assert ledger_exchange_ids(kept) == live_before_restore

    # The restored hub starts and serves on the restored ledger.
    hub.proc.start()
    assert hub.proc.stop(signal.SIGTERM) == 0


# -- the use cases in-process ---------------------------------------------------------------


async def served_hub_dir(tmp_path: Path) -> tuple[Settings, dict[str, OrgKeys]]:
    """A hub folder whose hub has run once, so its ledger has a signed checkpoint."""
    settings, keys = make_hub_dir(tmp_path, free_port())
    server = HubServer(build_hub(settings))
    await server.start()
    await server.stop()
    return settings, keys


@pytest.fixture
async def hub_dir(tmp_path: Path) -> tuple[Settings, dict[str, OrgKeys]]:
    return await served_hub_dir(tmp_path)


def test_backup_refuses_to_overwrite_and_to_name_the_hub_database(
    tmp_path: Path, hub_dir: tuple[Settings, dict[str, OrgKeys]]
) -> None:
    settings, _ = hub_dir
    out = tmp_path / "b.sqlite3"
    first = ops.backup(settings, out).info
    assert first.ledger_size > 0
    with pytest.raises(ConfigError, match="--force"):
        ops.backup(settings, out)
    assert ops.backup(settings, out, force=True).info.ledger_size == first.ledger_size
    with pytest.raises(ConfigError, match="own database"):
        ops.backup(settings, settings.node.database, force=True)
    with pytest.raises(BackupError, match="no such database"):
        ops.backup(
            settings.model_copy(
                update={"node": settings.node.model_copy(update={"database": tmp_path / "nope.db"})}
            ),
            tmp_path / "x.sqlite3",
        )


def test_restore_refuses_a_tampered_backup_and_keeps_the_database(
    tmp_path: Path, hub_dir: tuple[Settings, dict[str, OrgKeys]]
) -> None:
    settings, _ = hub_dir
    backup = tmp_path / "b.sqlite3"
    ops.backup(settings, backup)
    with closing(sqlite3.connect(backup)) as db:
        # Clearing a body without a purge entry naming it: the ledger no longer verifies.
        db.execute("UPDATE ledger SET body = NULL, salt = NULL WHERE idx = 1")
        db.commit()
    before = settings.node.database.read_bytes()
    result = ops.restore(settings, backup, SystemClock(), force=True)
    assert not result.installed
    assert not result.verify.ok
    assert result.verify.first_bad_index == 1
    assert settings.node.database.read_bytes() == before
    assert [p.name for p in settings.node.database.parent.iterdir() if "restore" in p.name] == []


async def test_restore_refuses_another_hubs_backup(
    tmp_path: Path, hub_dir: tuple[Settings, dict[str, OrgKeys]]
) -> None:
    settings, _ = hub_dir
    # Same org id, other keys: the other hub's checkpoints do not verify with ours.
    other, _ = await served_hub_dir(tmp_path / "other")
    backup = tmp_path / "other.sqlite3"
    ops.backup(other, backup)
    result = ops.restore(settings, backup, SystemClock(), force=True)
    assert not result.installed
    assert result.verify.problem is not None
    assert "key" in result.verify.problem


def test_restore_into_an_empty_place_and_refusals(
    tmp_path: Path, hub_dir: tuple[Settings, dict[str, OrgKeys]]
) -> None:
    settings, _ = hub_dir
    backup = tmp_path / "b.sqlite3"
    ops.backup(settings, backup)
    with pytest.raises(ConfigError, match="no such backup"):
        ops.restore(settings, tmp_path / "missing", SystemClock())
    with pytest.raises(ConfigError, match="own database"):
        ops.restore(settings, settings.node.database, SystemClock(), force=True)
    with pytest.raises(ConfigError, match="--force"):
        ops.restore(settings, backup, SystemClock())
    not_sqlite = tmp_path / "garbage.bin"
    not_sqlite.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BackupError):
        ops.restore(settings, not_sqlite, SystemClock(), force=True)

    database = settings.node.database
    for p in database.parent.glob(database.name + "*"):
        p.unlink()
    result = ops.restore(settings, backup, SystemClock())
    assert result.installed
    assert result.previous is None
    assert result.verify.ok
    assert describe_database(database).ledger_size == result.info.ledger_size


def test_restore_refuses_while_another_connection_holds_the_database(
    tmp_path: Path, hub_dir: tuple[Settings, dict[str, OrgKeys]]
) -> None:
    settings, _ = hub_dir
    backup = tmp_path / "b.sqlite3"
    ops.backup(settings, backup)
    with closing(sqlite3.connect(settings.node.database)) as holder:
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("SELECT COUNT(*) FROM ledger").fetchone()
        with pytest.raises(DatabaseInUse):
            ops.restore(settings, backup, SystemClock(), force=True)
    assert ops.restore(settings, backup, SystemClock(), force=True).installed
