"""Crash safety: SIGKILL at random moments never loses an acknowledged entry or breaks
the ledger.

A child process (`crash_child.py`) runs the hub's `Database` and `LedgerService` on one
file, with many concurrent writers that each print an entry's index and body token
only after `Database.write` returned. The test kills it with SIGKILL at random moments
(mostly under load, a few during start-up, i.e. during WAL recovery, migrations and
the first checkpoint), restarts it on the same file, and after every kill checks, with
the hub key pinned, that the file verifies and that every entry ever acknowledged is
there with its token. An index acknowledged twice would mean an acknowledged entry
was lost and its index handed out again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.crypto.keys import OrgKeys
from gateway.services.admin import verify_file
from tests.ledger.crash_child import ENTRY_TYPE

HUB = "hub-test"
CHILD = Path(__file__).with_name("crash_child.py")
ROOT_DIR = Path(__file__).resolve().parents[2]
WRITERS = 64
PAUSE_MS = 60  # ~2,000 appends/s on two cores: enough load, a file that verifies fast
MIN_KILLS = 20
MAX_KILLS = 24
BUDGET_S = 35.0


def _wait_ready(out: Path, proc: subprocess.Popen[bytes], err: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().startswith(b"ready\n"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    raise AssertionError(f"the child did not start: {err.read_text(errors='replace')}")


def _acknowledged(out: Path) -> list[tuple[int, str]]:
    """The `INDEX TOKEN` lines the child completed before it died (a torn last line,
    if any, was never a complete acknowledgement)."""
    text = out.read_text()
    lines = text.split("\n")[:-1]  # everything before the last newline
    assert lines[:1] == ["ready"] or not lines, text[:200]
    acked = []
    for line in lines[1:]:
        index, token = line.split(" ")
        acked.append((int(index), token))
    return acked


def _stored_tokens(database: Path) -> dict[int, str]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT idx, body FROM ledger WHERE type = ? AND body IS NOT NULL", (ENTRY_TYPE,)
        ).fetchall()
    finally:
        conn.close()
    return {int(idx): str(json.loads(body)["token"]) for idx, body in rows}


@pytest.mark.slow
def test_sigkill_never_loses_an_acknowledged_entry(tmp_path: Path) -> None:
    keys = OrgKeys.generate(HUB)
    key_file = tmp_path / "hub.key.json"
    keys.save(key_file)
    database = tmp_path / "hub.sqlite3"
    rng = random.Random()
    acked: dict[int, str] = {}
    kills = 0
    early_kills = 0
    started = time.monotonic()
    while kills < MAX_KILLS and (kills < MIN_KILLS or time.monotonic() - started < BUDGET_S):
        out = tmp_path / f"out-{kills}.txt"
        err = tmp_path / f"err-{kills}.txt"
        # Every sixth run dies at a random moment of its start-up (never the first run,
        # which must create the file), the others after 0.3-1 s of appending.
        early = kills % 6 == 5
        args = [str(CHILD), str(database), str(key_file), str(WRITERS), str(PAUSE_MS)]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, *args],
                stdout=stdout,
                stderr=stderr,
                cwd=ROOT_DIR,
            )
        try:
            if early:
                time.sleep(rng.uniform(0.0, 0.25))
            else:
                _wait_ready(out, proc, err)
                time.sleep(rng.uniform(0.3, 1.0))
            alive = proc.poll() is None
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        assert alive, f"the child died before the kill: {err.read_text(errors='replace')}"
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        early_kills += early

        lines = _acknowledged(out)
        if not early:
            assert lines, "no append was acknowledged in a whole run"
        for index, token in lines:
            assert index not in acked, f"index {index} was acknowledged twice"
            acked[index] = token

        report = verify_file(database, keys.signing_key, HUB)
        assert report.ok, (kills, report)
        stored = _stored_tokens(database)
        lost = {i: t for i, t in acked.items() if stored.get(i) != t}
        assert not lost, f"after kill {kills}: {len(lost)} acknowledged entries lost or changed"

    assert kills >= MIN_KILLS
    assert early_kills >= 3
    assert report.checkpoints > kills  # the service kept signing between the kills
    assert len(acked) > 100 * kills  # the kills landed under load
