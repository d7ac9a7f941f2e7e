"""The file drop against a real hub, in process: a dropped JSON dat-request is sent and
moved to done/ with the hub's answer; a bad CSV goes to failed/ with a reason naming
line and column and nothing is sent; while the hub is unreachable a file stays in in/
and is sent once it is back, once (its idempotency keys)."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.adapters.client import HubClient
from gateway.adapters.filedrop import FileDrop
from gateway.adapters.outbound import Outbound
from gateway.clock import SystemClock
from gateway.storage.adapter_store import AdapterStore
from tests.adapters.support import write_dropped
from tests.conftest import BSN, Network, free_port, synthetic_pid

CASE = "ZVH-DROP-1"


async def test_dropped_files_are_sent_moved_and_explained(tmp_path: Path, network: Network) -> None:
    zvh = network.client("zvh-test")
    await zvh.register_case(CASE, "huiselijk-geweld", [("S1", synthetic_pid())], ["politie-test"])
    store = AdapterStore(tmp_path / "adapter.sqlite3")
    await store.open()
    client = HubClient(network.url, network.keys["zvh-test"])
    try:
        drop = FileDrop(tmp_path / "drop", Outbound(client, store, SystemClock()), 1.0)
        drop.prepare()
        request = {
            "type": "dat-request",
            "case_ref": CASE,
            "subject_ref": "S1",
            "recipients": ["politie-test"],
            "body": {"bsn": BSN},
        }
        write_dropped(drop.in_dir, "vraag-1.json", json.dumps(request))
        write_dropped(drop.in_dir, "kapot.csv", f"type,case_ref\ndat-request,{BSN}\n")
        (drop.in_dir / ".half.json.part").write_text("{")  # still being written: ignored
        assert await drop.scan_once() == 2

        result = json.loads((drop.done_dir / "vraag-1.json.result.json").read_text())
        [sent] = result["results"]
        assert sent["status"] == 202
        assert sent["response"]["delivered"] == ["politie-test"]
        reason = (drop.failed_dir / "kapot.csv.reason.txt").read_text()
        assert reason.startswith("not sent: line 2: ")
        assert "subject_ref" in reason
        assert BSN not in reason
        assert sorted(p.name for p in drop.in_dir.iterdir()) == [".half.json.part"]
        police = network.client("politie-test")
        assert [m.kind for m in await police.fetch(wait=1)] == ["dat-request"]

        # The hub unreachable: the file waits in in/; back: sent once.
        hub_url = client.base_url
        client.base_url = f"http://127.0.0.1:{free_port()}"
        write_dropped(drop.in_dir, "vraag-2.json", json.dumps({**request, "body": {"n": 2}}))
        assert await drop.scan_once() == 0
        assert (drop.in_dir / "vraag-2.json").exists()
        client.base_url = hub_url
        assert await drop.scan_once() == 1
        assert (drop.done_dir / "vraag-2.json").exists()
        # Dropped again under the same name and content: the stored answer, not a new request.
        write_dropped(drop.in_dir, "vraag-2.json", json.dumps({**request, "body": {"n": 2}}))
        assert await drop.scan_once() == 1
        assert (drop.done_dir / "vraag-2.1.json").exists()
        first = json.loads((drop.done_dir / "vraag-2.json.result.json").read_text())
        again = json.loads((drop.done_dir / "vraag-2.1.json.result.json").read_text())
        assert first["results"] == again["results"]
        # Exactly one more request reached the police (the first one is still leased).
        messages = await police.fetch(wait=1)
        assert [(m.kind, m.body) for m in messages] == [("dat-request", {"n": 2})]
    finally:
        await client.close()
        await store.close()


async def test_store_keeps_items_once_and_retries_dead_letters(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / "a.sqlite3")
    await store.open()
    try:
        message = {
            "message_id": 7,
            "kind": "dat-request",
            "exchange_id": "x",
            "from": "a",
            "case_ref": "C",
            "subject_ref": "S",
            "envelope": {"ct": "…"},
        }
        row, new = await store.receive(message, 1000)
        assert new
        assert (row.state, row.attempts, row.next_attempt_ms) == ("pending", 0, 1000)
        _, again = await store.receive({**message, "kind": "changed"}, 2000)
        assert not again
        assert [d.message_id for d in await store.due(1000)] == [7]
        await store.record_attempt(7, 1, 1100, "failed", "status 503")
        await store.set_reply(7, {"method": "POST", "path": "/x", "body": {}})
        await store.mark_dead(7, 1200, "status 503")
        assert await store.due(10_000) == []
        assert await store.to_ack() == [7]
        [letter] = await store.dead_letters()
        assert letter.summary()["last_error"] == "status 503"
        assert "envelope" not in json.dumps(letter.summary())
        assert await store.retry_dead(8, 1300) == []
        assert await store.retry_dead(None, 1300) == [7]
        retried = await store.get(7)
        assert retried is not None
        # A fresh budget, due now, and the unsent reply dropped (the system is asked again).
        assert (retried.state, retried.attempts, retried.reply) == ("pending", 0, None)
        await store.mark_delivered(7, 1400)
        delivered = await store.get(7)
        assert delivered is not None
        assert delivered.message is None  # the ciphertext is gone once delivered
        assert await store.attempts(7) == [(1, 1100, "failed", "status 503")]
        # Pruning forgets only what is delivered *and* acknowledged, and old enough.
        await store.claim_idempotency("k", "answers", "h", None, 1000)
        await store.finish_idempotency("k", 202, {}, 1500)
        assert await store.prune(10_000) == (0, 1)
        await store.mark_acked([7])
        assert await store.prune(1400) == (0, 0)
        assert await store.prune(1401) == (1, 0)
        assert await store.get(7) is None
        assert await store.attempts(7) == []
    finally:
        await store.close()
