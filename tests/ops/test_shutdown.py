"""SIGTERM while four senders post dat-requests and a partner long-polls.

The hub process must exit 0 within 10 s; every request that got its 202 must be in
the ledger; and the last checkpoint it stored before exiting must cover every entry,
so that the ledger file verifies with nothing left uncovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.services import admin
from tests.conftest import BSN, NAME
from tests.e2e.hubproc import Processes
from tests.ops.support import (
    DatLoad,
    http_get,
    ledger_and_checkpoint_sizes,
    ledger_exchange_ids,
    make_ops_hub,
    open_case,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CASE_REF = "ZVHOPS-SIGTERM-0001"
SUBJECT_REF = "S1"
PERSON = {"bsn": BSN, "name": NAME}
EXIT_WITHIN_S = 10.0
VT = "vt-test"


async def test_sigterm_under_load_exits_0_in_time_and_loses_nothing(
    tmp_path: Path, procs: Processes
) -> None:
    hub = make_ops_hub(tmp_path, procs)
    await open_case(hub, CASE_REF, SUBJECT_REF)
    load = DatLoad(hub, CASE_REF, SUBJECT_REF, PERSON)
    load.start()
    await load.wait_for(40)

    async def long_poll() -> None:
        # A long-poll in flight when the signal comes (Veilig Thuis is in no case, so
        # nothing arrives) must not hold the hub up beyond its shutdown timeout.
        async with hub.client(VT) as vt:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                while True:
                    await vt.fetch(wait=30, limit=1)

    poller = asyncio.create_task(long_poll())
    await asyncio.sleep(0.2)
    proc = hub.proc.proc
    assert proc is not None
    assert http_get(f"http://127.0.0.1:{hub.metrics_port}/readyz")[0] == 200

    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    while proc.poll() is None:
        assert time.monotonic() - sent < EXIT_WITHIN_S + 5, "hub still running"
        await asyncio.sleep(0.02)
    took = time.monotonic() - sent
    print(f"exited {took:.2f} s after SIGTERM; {len(load.acked)} acked, {load.failures} refused")
    await load.finish()
    poller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await poller

    assert proc.returncode == 0, hub.proc.logs()
    assert took < EXIT_WITHIN_S, f"exited {took:.1f} s after SIGTERM"
    # The load really ran into the shutdown: some requests were refused or cut off.
    assert load.failures > 0
    assert len(load.acked) >= 40

    database = hub.settings.node.database
    in_ledger = ledger_exchange_ids(database)
    lost = set(load.acked) - in_ledger
    assert not lost, f"{len(lost)} acknowledged requests are not in the ledger"
    entries, signed = ledger_and_checkpoint_sizes(database)
    assert signed == entries, f"the last checkpoint covers {signed} of {entries} entries"
    report = admin.verify_file(database, hub.hub_key(), hub.settings.node.org)
    assert report.ok, report
    assert report.uncovered == 0
    assert '"msg": "hub stopped"' in hub.proc.stderr.read_text(encoding="utf-8")
