"""Child process of the crash test: appends to the ledger under load until SIGKILL.

    python tests/ledger/crash_child.py DB KEY_FILE WRITERS PAUSE_MS

Opens the hub's `Database` and `LedgerService` (signing a checkpoint at most 0.2 s
after appends) on DB, prints `ready`, then runs WRITERS concurrent writers. Each one
appends one entry per `Database.write` with a fresh random token in its body, and only
after that write returned (the group commit is durable) prints `INDEX TOKEN`, flushed;
then pauses up to PAUSE_MS (random), so that the file does not grow faster than the
test can verify it. It never stops by itself: the test kills it.
"""

from __future__ import annotations

import asyncio
import functools
import random
import secrets
import sys
from pathlib import Path

from gateway.clock import SystemClock
from gateway.crypto.keys import OrgKeys
from gateway.services.ledger import LedgerService
from gateway.storage.database import Database, Tx
from gateway.storage.ledger_store import LedgerRef

ENTRY_TYPE = "crash-test"


def _append(tx: Tx, *, token: str, writer: int, now_ms: int) -> LedgerRef:
    actors = (f"org-{writer % 5}", "hub-test")
    return tx.append_ledger(ENTRY_TYPE, now_ms, {"token": token, "writer": writer}, actors)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run(path: Path, key_file: Path, writers: int, pause_s: float) -> None:
    keys = OrgKeys.load(key_file)
    clock = SystemClock()
    db = Database(path)
    await db.open()
    ledger = LedgerService(db, keys, clock, interval_s=0.2)
    db.add_ledger_listener(lambda refs: ledger.notify_appended())
    await ledger.start()
    signer = asyncio.create_task(ledger.run(), name="checkpoints")
    _say("ready")

    async def writer(number: int) -> None:
        rng = random.Random()
        while True:
            token = secrets.token_hex(16)
            job = functools.partial(_append, token=token, writer=number, now_ms=clock.now_ms())
            ref = await db.write("crash-append", job)
            _say(f"{ref.index} {token}")  # acknowledged: the write is durable
            if pause_s > 0:
                await asyncio.sleep(rng.uniform(0, pause_s))

    await asyncio.gather(signer, *(writer(n) for n in range(writers)))


def main(argv: list[str]) -> None:
    path, key_file, writers, pause_ms = argv
    asyncio.run(run(Path(path), Path(key_file), int(writers), int(pause_ms) / 1000))


if __name__ == "__main__":
    main(sys.argv[1:])
