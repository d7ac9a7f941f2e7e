"""A 25 MB attachment from one partner process to another through a hub process
(issue #8, acceptance 3): it arrives intact (hash checked), the hub's files hold
only ciphertext (the plaintext's first KiB occurs in none of them, the database
included), no process needs the file in memory, and the hub deletes the blob once
the recipient has fetched it and acknowledged the message."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import synthetic_pid
from tests.e2e.hubproc import (
    HubProcess,
    HubSetup,
    Processes,
    Started,
    create_hub,
    iter_files,
    result_of,
    spawn_script,
    wait_ready,
)

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("message_proc.py")
HUB_ORG = "hub-e2e"
ZVH = "zvh-e2e"
VT = "vt-e2e"
PARTNERS = ((ZVH, "zvh", "bestuur"), (VT, "partner", "zorg"))
SIZE = 25 * 1024 * 1024
TIMEOUT_S = 90.0
TEXT = "Verslag van het huisbezoek, zie bijlage."


def spawn(procs: Processes, setup: HubSetup, out: Path, org: str, spec: dict[str, Any]) -> Started:
    return spawn_script(procs, SCRIPT, setup, out, org=org, spec=spec, timeout_s=60)


def occurs_in(needle: bytes, path: Path) -> bool:
    """Search a file in 1 MiB windows that overlap by the needle's length."""
    overlap = len(needle) - 1
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            window = tail + chunk
            if needle in window:
                return True
            tail = window[-overlap:]
    return False


def test_25_mb_attachment_between_processes(tmp_path: Path, procs: Processes) -> None:
    setup = create_hub(tmp_path, HUB_ORG, PARTNERS)
    hub = HubProcess(setup, procs)
    hub.start()
    plain = tmp_path / "dossier.pdf"
    with plain.open("wb") as f:
        for _ in range(SIZE // (1 << 20)):
            f.write(os.urandom(1 << 20))
    first_kib = plain.read_bytes()[:1024]
    out = tmp_path / "out"
    out.mkdir()
    dest = tmp_path / "ontvangen.pdf"
    go = tmp_path / "go"
    # The receiver signs its accession first (so it can be addressed), then waits.
    receiver = spawn(
        procs, setup, out, VT, {"role": "receiver", "dest": str(dest), "go_file": str(go)}
    )
    wait_ready(receiver, TIMEOUT_S)

    sender = spawn(
        procs,
        setup,
        out,
        ZVH,
        {
            "role": "sender",
            "case_ref": "ZVH-E2E-0025",
            "pid": synthetic_pid(),
            "to": VT,
            "file": str(plain),
            "text": TEXT,
        },
    )
    sent = result_of(sender, TIMEOUT_S)
    assert sent["delivered"] == [VT]
    blob = setup.hub_dir / "blobs" / sent["blob_id"]
    assert blob.stat().st_size == sent["size"] > SIZE

    # Before anyone fetched it: every hub file holds ciphertext only.
    hub_files = list(iter_files(setup.hub_dir))
    assert blob in hub_files
    assert setup.database in hub_files
    assert [p for p in hub_files if occurs_in(first_kib, p)] == []
    assert not occurs_in(TEXT.encode(), setup.database)

    go.touch()
    got = result_of(receiver, TIMEOUT_S)
    assert got["from"] == ZVH
    assert got["text"] == TEXT
    assert got["filename"] == "dossier.pdf"
    assert got["sha256"] == got["descriptor_sha256_plain"] == sent["sha256_plain"]
    assert dest.stat().st_size == SIZE
    assert dest.read_bytes() == plain.read_bytes()
    assert got["acked"] is True

    # Fetched to the end and acknowledged by its only recipient: the blob is gone.
    deadline = time.monotonic() + 10
    while blob.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not blob.exists()
    assert [p for p in iter_files(setup.hub_dir) if occurs_in(first_kib, p)] == []
    assert hub.stop() == 0
    # Neither partner process held the file in memory (it would be > 25 MB by itself).
    for result in (sent, got):
        assert result["peak_rss_kib"] < 100 * 1024, result
