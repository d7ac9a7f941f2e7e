"""Backup and restore of the attachment blobs: the backup holds the blob files its
snapshot's rows name (checked against their ids), a blob the hub deletes while the
backup runs is kept by the pins, and a restore puts back verified files only and
names the missing and corrupt ones."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.clock import SystemClock
from gateway.services import ops
from gateway.storage.blob_backup import (
    blobs_folder_of,
    pin_blobs,
    restore_blobs,
    write_backup_blobs,
)
from gateway.storage.blob_files import PIN_PREFIX, BlobFiles
from gateway.web.hub_app import HubServer, build_hub
from tests.web.conftest import RunningHub, run_hub
from tests.web.helpers import CASE, open_case


def live_blobs(running: RunningHub) -> Path:
    return running.net.settings.node.database.parent / "blobs"


def blob_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


async def restart(running: RunningHub) -> None:
    running.server = HubServer(build_hub(running.net.settings))
    await running.server.start()
    running.net.hub = running.server.hub


async def test_backup_keeps_the_snapshots_blobs_and_restore_brings_them_back(
    tmp_path: Path,
) -> None:
    async with run_hub(tmp_path / "h") as running:
        net = running.net
        await open_case(net)
        police, vt = net.client("politie-test"), net.client("vt-test")
        data = {name: os.urandom(150_000) for name in ("a.pdf", "b.pdf", "c.pdf")}
        for name, content in data.items():
            (tmp_path / name).write_bytes(content)
        sent = [await police.attach(tmp_path / n) for n in ("a.pdf", "b.pdf")]
        loose = await police.attach(tmp_path / "c.pdf")  # uploaded, not (yet) named
        await police.send_message(CASE, ["vt-test"], {"text": "bijlagen"}, attachments=sent)
        ids = {d["blob_id"] for d in [*sent, loose]}

        out = tmp_path / "backups" / "hub.sqlite3"
        done = ops.backup(net.settings, out)  # the hub keeps serving
        assert done.blobs.complete
        assert (done.blobs.wanted, done.blobs.present) == (3, 3)
        folder = blobs_folder_of(out)
        assert done.blobs.folder == folder
        assert blob_names(folder) == ids
        assert folder.stat().st_mode & 0o777 == 0o700
        for f in folder.iterdir():
            assert f.stat().st_mode & 0o077 == 0, "blob copies are 0600"
            assert hashlib.sha256(f.read_bytes()).hexdigest() == f.name
        assert done.blobs.bytes == sum(f.stat().st_size for f in folder.iterdir())
        assert not list(live_blobs(running).glob(PIN_PREFIX + "*")), "pins removed"

        # After the backup the recipient fetches and acknowledges: the hub deletes both.
        (msg,) = await vt.fetch()
        for d in msg.body["attachments"]:  # type: ignore[index]
            await vt.fetch_attachment(d, tmp_path / "got")
        await vt.ack([msg.message_id])
        assert blob_names(live_blobs(running)) == {loose["blob_id"]}

        await running.server.stop()
        restored = ops.restore(net.settings, out, SystemClock(), force=True)
        assert restored.installed
        assert restored.blobs is not None
        assert restored.blobs.complete
        assert restored.blobs.present == 3
        assert blob_names(live_blobs(running)) == ids

        # The restored hub delivers the message again, and its attachments open intact.
        await restart(running)
        (again,) = await vt.fetch()
        for d in again.body["attachments"]:  # type: ignore[index]
            dest = tmp_path / f"again-{d['filename']}"
            await vt.fetch_attachment(d, dest)
            assert dest.read_bytes() == data[d["filename"]]


async def test_restore_names_missing_and_corrupt_blobs_and_installs_no_corrupt_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with run_hub(tmp_path / "h") as running:
        net = running.net
        await open_case(net)
        police = net.client("politie-test")
        descriptors = []
        for name in ("a", "b", "c"):
            (tmp_path / name).write_bytes(os.urandom(80_000))
            descriptors.append(await police.attach(tmp_path / name))
        out = tmp_path / "hub.sqlite3"
        assert ops.backup(net.settings, out).blobs.complete
        await running.server.stop()

        bad, gone, good = (d["blob_id"] for d in descriptors)
        folder = blobs_folder_of(out)
        damaged = bytearray((folder / bad).read_bytes())
        damaged[100] ^= 1
        (folder / bad).write_bytes(bytes(damaged))
        (folder / gone).unlink()
        live = live_blobs(running)
        for f in live.iterdir():
            f.unlink()
        (live / bad).write_bytes(b"not the blob")  # a damaged live file is replaced or named

        config = str(net.settings.source)
        code = main(["restore", "--config", config, "--from", str(out), "--force", "--json"])
        assert code == 3
        report = json.loads(capsys.readouterr().out)
        assert report["installed"] is True
        assert report["blobs"]["missing"] == [gone]
        assert report["blobs"]["corrupt"] == [bad]
        assert report["blobs"]["present"] == 1
        assert (live / good).is_file()
        assert (live / bad).read_bytes() == b"not the blob", "a corrupt copy is never installed"
        assert not (live / gone).exists()
        assert not [p for p in live.iterdir() if p.name.startswith(".")], "no temporary files"

        # The same without --json: one line names them, exit code 3.
        assert main(["restore", "--config", config, "--from", str(out), "--force"]) == 3
        text = capsys.readouterr().out
        assert f"MISSING 1: {gone}" in text
        assert f"CORRUPT 1: {bad}" in text
        await restart(running)


def put_blob(folder: Path, content: bytes) -> tuple[str, int]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    blob_id = hashlib.sha256(content).hexdigest()
    (folder / blob_id).write_bytes(content)
    return blob_id, len(content)


def test_a_pinned_blob_deleted_during_the_backup_is_still_copied(tmp_path: Path) -> None:
    live = tmp_path / "blobs"
    blob_id, size = put_blob(live, os.urandom(5000))
    with pin_blobs(live) as pin:
        assert pin is not None
        assert pin.parent == live
        (live / blob_id).unlink()  # the hub deletes it after the snapshot began
        report = write_backup_blobs({blob_id: size}, [pin, live], tmp_path / "out.blobs")
    assert report.complete
    assert report.present == 1
    assert not list(live.glob(PIN_PREFIX + "*"))
    # Without a pin the same race loses the file, and the report says so.
    report = write_backup_blobs({blob_id: size}, [live], tmp_path / "other.blobs")
    assert report.missing == (blob_id,)
    assert not report.complete


def test_a_forced_backup_folder_holds_only_the_snapshots_blobs(tmp_path: Path) -> None:
    live = tmp_path / "blobs"
    kept, kept_size = put_blob(live, b"kept" * 1000)
    dest = tmp_path / "out.blobs"
    old, _ = put_blob(dest, b"deleted since the last backup" * 100)
    write_backup_blobs({kept: kept_size}, [live], dest)
    assert blob_names(dest) == {kept}, old
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_wrong_size_or_hash_is_corrupt_everywhere(tmp_path: Path) -> None:
    live = tmp_path / "blobs"
    blob_id, size = put_blob(live, b"x" * 3000)
    report = write_backup_blobs({blob_id: size + 1}, [live], tmp_path / "out.blobs")
    assert report.corrupt == (blob_id,)
    assert blob_names(tmp_path / "out.blobs") == set()
    restored = restore_blobs({blob_id: size}, tmp_path / "out.blobs", tmp_path / "fresh")
    assert restored.missing == (blob_id,)


def test_the_hub_drops_pins_a_crashed_backup_left(tmp_path: Path) -> None:
    files = BlobFiles(tmp_path / "blobs")
    files.open()
    blob_id, _ = put_blob(files.folder, b"y" * 100)
    stale, fresh = files.folder / f"{PIN_PREFIX}1-1", files.folder / f"{PIN_PREFIX}2-2"
    for pin in (stale, fresh):
        pin.mkdir()
        os.link(files.folder / blob_id, pin / blob_id)
    day_ago = os.stat(stale).st_mtime - 2 * 86_400
    os.utime(stale, (day_ago, day_ago))
    files.open()
    assert not stale.exists()
    assert fresh.exists(), "a running backup's pin stays"
    assert list(files.names()) == [blob_id]
