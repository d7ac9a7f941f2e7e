"""Issue 8, acceptance 2 with real processes: the partner system is down.

1. While the police system is down, its adapter retries (backoff, jitter) and the
   request stays unacknowledged at the hub; the adapter is even SIGKILLed meanwhile.
   Once the system is back, the request arrives exactly once and the answer reaches
   the ZVH; only then is it acknowledged at the hub.
2. With a small attempt limit, a request the system never takes becomes a dead letter
   (`zvh-gateway adapter dead-letters list`), acknowledged at the hub because the
   adapter holds it durably; `dead-letters retry` delivers it once the system is back.

Nothing is lost or duplicated: every item reaches the police system under its own
`Idempotency-Key`, which the system sees once per accepted delivery, and the ZVH gets
one answer per exchange.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.adapters.support import (
    AdapterProcess,
    FakeSystem,
    LocalClient,
    answers_nothing,
    init_adapter,
    set_config,
    wait_until,
)
from tests.adapters.test_e2e_adapters import PERSON, PoliceSystem
from tests.conftest import synthetic_pid
from tests.e2e.hubproc import HubProcess, HubSetup, Processes, cli, create_hub

pytestmark = pytest.mark.e2e

HUB = "hub-outage"
ZVH = "zvh-outage"
POLICE = "politie-outage"
PARTNERS = ((ZVH, "zvh", "bestuur"), (POLICE, "partner", "straf"))
CASE = "ZVH-OUT-0001"


def hub_inbox(setup: HubSetup, org: str) -> list[tuple[int, str, bool]]:
    """(message_id, kind, acknowledged) of `org`'s inbox, read from the hub's file."""
    uri = f"file:{setup.database}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute(
            "SELECT message_id, kind, acked_ms IS NOT NULL FROM inbox WHERE org = ? "
            "ORDER BY message_id",
            (org,),
        ).fetchall()
    return [(int(r[0]), str(r[1]), bool(r[2])) for r in rows]


def adapter_attempts(db: Path, message_id: int) -> list[tuple[int, str]]:
    uri = f"file:{db}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        rows = conn.execute(
            "SELECT attempt, outcome FROM delivery_attempts WHERE message_id = ? ORDER BY attempt",
            (message_id,),
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


async def test_partner_down_then_back_then_dead_letters_and_retry(
    tmp_path: Path, procs: Processes, session: aiohttp.ClientSession
) -> None:
    setup = create_hub(tmp_path, HUB, PARTNERS)
    HubProcess(setup, procs).start()
    police_system = FakeSystem("police", PoliceSystem().respond)
    case_system = FakeSystem("zvh case system", answers_nothing)
    await case_system.start()  # the police system stays down for now
    try:
        zvh = init_adapter(tmp_path, setup, ZVH, webhook_url=case_system.url)
        police = init_adapter(
            tmp_path,
            setup,
            POLICE,
            webhook_url=police_system.url,
            max_attempts=1000,
            backoff_base_s=0.1,
            backoff_max_s=0.5,
        )
        zvh_proc, police_proc = AdapterProcess(zvh, procs), AdapterProcess(police, procs)
        zvh_proc.start()
        police_proc.start()
        z, p = LocalClient(zvh, session), LocalClient(police, session)
        await z.ok("/local/v1/accessions", {})
        await p.ok("/local/v1/accessions", {})
        await z.ok(
            "/local/v1/cases",
            {
                "case_ref": CASE,
                "theme": "huiselijk-geweld",
                "subjects": [{"subject_ref": "S1", "pid": synthetic_pid()}],
                "participants": [POLICE],
            },
        )
        body = {"case_ref": CASE, "subject_ref": "S1", "recipients": [POLICE], "body": PERSON}
        first = await z.ok("/local/v1/dat-requests", body)

        # Down: the adapter keeps trying, the hub keeps the item unacknowledged.
        police_db = police.dir / "data" / "adapter.sqlite3"
        await wait_until(lambda: len(hub_inbox(setup, POLICE)) == 1, what="hub inbox row")
        [(mid1, kind, acked)] = hub_inbox(setup, POLICE)
        assert (kind, acked) == ("dat-request", False)
        await wait_until(
            lambda: police_db.exists() and len(adapter_attempts(police_db, mid1)) >= 3,
            what="three failed attempts",
        )
        assert {o for _, o in adapter_attempts(police_db, mid1)} == {"failed"}
        assert hub_inbox(setup, POLICE)[0][2] is False
        # A crash meanwhile changes nothing: the item is in the adapter's database.
        police_proc.kill()
        police_proc.start()
        assert hub_inbox(setup, POLICE)[0][2] is False

        # Back: delivered once, answered, and only then acknowledged at the hub.
        await police_system.start()
        await police_system.wait_for(lambda r: len(r) >= 1)
        await case_system.wait_for(lambda r: any(i["kind"] == "dat-answer" for _, i in r))
        await wait_until(lambda: hub_inbox(setup, POLICE)[0][2], what="hub ack")
        answer = next(i for _, i in case_system.received if i["kind"] == "dat-answer")
        assert (answer["exchange_id"], answer["decision"]) == (first["exchange_id"], "known")
        assert [k for k, _ in police_system.received] == [f"inbox-{mid1}"]
        assert adapter_attempts(police_db, mid1)[-1][1] == "accepted"

        # Now a small attempt limit (a restart reads it), and the system down again.
        assert police_proc.stop() == 0  # SIGTERM: a clean stop
        set_config(police, r"^max_attempts = \d+", "max_attempts = 3")
        await police_system.stop()
        police_proc.start()
        second = await z.ok("/local/v1/dat-requests", body)
        await wait_until(lambda: len(hub_inbox(setup, POLICE)) == 2, what="second inbox row")
        mid2 = hub_inbox(setup, POLICE)[1][0]

        def dead_letters() -> list[dict[str, Any]]:
            out = cli("adapter", "dead-letters", "list", "--config", str(police.config), "--json")
            result: list[dict[str, Any]] = json.loads(out)
            return result

        await wait_until(
            lambda: [d["message_id"] for d in dead_letters()] == [mid2], what="a dead letter"
        )
        [letter] = dead_letters()
        assert (letter["kind"], letter["attempts"]) == ("dat-request", 3)
        assert "envelope" not in letter
        assert "body" not in letter
        # Held durably by the adapter, so acknowledged at the hub (no endless redelivery).
        await wait_until(lambda: hub_inbox(setup, POLICE)[1][2], what="dead letter acked")
        # The local API lists it too.
        async with session.get(
            police.url + "/local/v1/dead-letters",
            headers={"Authorization": f"Bearer {police.token}"},
        ) as resp:
            listed = await resp.json()
        assert [d["message_id"] for d in listed["dead_letters"]] == [mid2]

        # Retry from the dead-letter list once the system is back: delivered once.
        await police_system.start()
        out = cli("adapter", "dead-letters", "retry", "--config", str(police.config), str(mid2))
        assert str(mid2) in out
        await police_system.wait_for(lambda r: len(r) >= 2)
        await case_system.wait_for(
            lambda r: len([i for _, i in r if i["kind"] == "dat-answer"]) >= 2
        )
        await wait_until(lambda: dead_letters() == [], what="dead letters emptied")
        answers = [i for _, i in case_system.received if i["kind"] == "dat-answer"]
        assert sorted(a["exchange_id"] for a in answers) == sorted(
            [first["exchange_id"], second["exchange_id"]]
        )
        # Nothing lost, nothing twice: one accepted delivery per item, one answer each.
        assert [k for k, _ in police_system.received] == [f"inbox-{mid1}", f"inbox-{mid2}"]
        assert len({k for k, _ in case_system.received}) == len(case_system.received)
        await wait_until(
            lambda: all(a for org in (POLICE, ZVH) for _, _, a in hub_inbox(setup, org)),
            what="every item acknowledged at the hub",
        )
        # Retrying again finds nothing.
        assert "no dead letters" in _cli_fails(police.config)
    finally:
        await police_system.stop()
        await case_system.stop()


def _cli_fails(config: Path) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "adapter",
            "dead-letters",
            "retry",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1, proc
    return proc.stdout
