"""The blob store's budget and the metrics its alerts watch: an upload that would
bring the stored ciphertext above `blob_store_budget_bytes` is 507 storage-full and
leaves no file; uploads are counted by outcome; the oldest blob a recipient has not
fetched is exported as its upload time."""

from __future__ import annotations

import os
import re
from pathlib import Path

from gateway.web.hub_app import HubServer
from tests.federation.support import eventually
from tests.web.conftest import run_hub
from tests.web.helpers import CASE, open_case
from tests.web.test_blobs import blob_dir, raw_put, stored_blobs

MIB = 1024**2


def metric(server: HubServer, name: str, labels: str = "") -> float:
    text = server.hub.metrics.render().decode()
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def uploads(server: HubServer, outcome: str) -> float:
    return metric(server, "zvh_gateway_blob_uploads_total", f'{{outcome="{outcome}"}}')


async def test_the_budget_refuses_uploads_with_507_and_the_metrics_follow(
    tmp_path: Path,
) -> None:
    async with run_hub(
        tmp_path, messages={"blob_store_budget_bytes": MIB, "max_blob_bytes": 700_000}
    ) as running:
        net, server = running.net, running.server
        assert metric(server, "zvh_gateway_blob_budget_bytes") == MIB
        first = os.urandom(500_000)
        status, stored = await raw_put(net, "politie-test", first)
        assert status == 201
        # 500 000 + 600 000 > 1 MiB: refused by Content-Length, and while streaming.
        second = os.urandom(600_000)
        status, reply = await raw_put(net, "politie-test", second)
        assert status == 507
        assert reply["code"] == "storage-full"
        status, reply = await raw_put(net, "politie-test", second, chunked=True)
        assert status == 507
        assert stored_blobs(net) == [stored["blob_id"]]
        assert [p.name for p in blob_dir(net).iterdir()] == [stored["blob_id"]]
        status, _ = await raw_put(net, "politie-test", os.urandom(700_001))
        assert status == 413
        status, _ = await raw_put(net, "politie-test", os.urandom(400_000))
        assert status == 201
        assert uploads(server, "stored") == 2
        assert uploads(server, "storage-full") == 2
        assert uploads(server, "too-large") == 1
        assert metric(server, "zvh_gateway_blob_stored_bytes") == 900_000

        # No recipient yet: nothing is waiting to be fetched.
        assert metric(server, "zvh_gateway_blob_oldest_unfetched_timestamp_seconds") == 0
        await open_case(net)
        police, vt = net.client("politie-test"), net.client("vt-test")
        (tmp_path / "f.bin").write_bytes(os.urandom(10_000))
        attached = await police.attach(tmp_path / "f.bin")
        await police.send_message(CASE, ["vt-test"], {"text": "x"}, attachments=[attached])
        await server.hub.blobs.publish()  # the sweep does this every sweep_interval_s
        waiting = metric(server, "zvh_gateway_blob_oldest_unfetched_timestamp_seconds")
        assert abs(waiting - server.hub.clock.now_ms() / 1000) < 60
        (msg,) = await vt.fetch()
        await vt.fetch_attachment(msg.body["attachments"][0], tmp_path / "got")  # type: ignore[index]

        async def fetched() -> bool:  # the hub records it after the last byte went out
            return metric(server, "zvh_gateway_blob_oldest_unfetched_timestamp_seconds") == 0

        await eventually(fetched)
