"""The hub's operational parts, in-process: the ledger self-check, the expiry gauges,
the request id, the access log, the long-polls that end when the hub stops, and the
metric names the issue asks for."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.clock import SystemClock
from gateway.crypto.keys import OrgKeys
from gateway.logs import JsonFormatter, request_context
from gateway.metrics import Metrics
from gateway.services import admin, ops
from gateway.services.ledger import SignedHead
from gateway.web import hub_app
from tests.conftest import PROTOCOL_TEXT
from tests.ops.support import metric_samples
from tests.web.conftest import RunningHub, run_hub

DAY_MS = 86_400_000


def samples(hub: RunningHub) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = hub.net.hub.metrics.render().decode()
    return {(n, tuple(sorted(labels.items()))): v for n, labels, v in metric_samples(text)}


# -- the ledger self-check -------------------------------------------------------------


async def test_self_check_passes_then_sees_a_bad_key_a_bad_checkpoint_and_a_fork(
    tmp_path: Path,
) -> None:
    async with run_hub(tmp_path) as running:
        hub = running.net.hub
        key = hub.keys.signing_key
        first = await ops.check_ledger(hub.ledger, hub.db, key, None)
        assert first.ok, first
        assert first.head is not None
        await running.net.client("zvh-test").register_case(
            "C-SELF", "huiselijk-geweld", [("S1", "ab" * 64)], ["politie-test"]
        )
        await hub.ledger.sign(force=True)
        second = await ops.check_ledger(hub.ledger, hub.db, key, first.head)
        assert second.ok, second
        assert second.size > first.size

        other = OrgKeys.generate(hub.keys.org).signing_key
        wrong_key = await ops.check_ledger(hub.ledger, hub.db, other, None)
        assert not wrong_key.ok
        assert "served checkpoint" in str(wrong_key.problem)

        assert second.head is not None
        fork = SignedHead(first.size, b"\x11" * 32, first.head.time_ms, first.head.note)
        forked = await ops.check_ledger(hub.ledger, hub.db, key, fork)
        assert not forked.ok
        assert "does not extend" in str(forked.problem)
        bigger = SignedHead(second.size + 5, second.head.root, 0, second.head.note)
        assert "shrank" in str((await ops.check_ledger(hub.ledger, hub.db, key, bigger)).problem)

        # A newest stored checkpoint whose tree frontier is not its root (the table is
        # append-only, so: a later row for the same size, with the oldest row's tree).
        with contextlib.closing(sqlite3.connect(hub.settings.node.database)) as db:
            db.execute(
                "INSERT INTO checkpoints (size, time_ms, root, note, tree)"
                " SELECT size, time_ms + 1, root, note,"
                " (SELECT tree FROM checkpoints ORDER BY size LIMIT 1)"
                " FROM checkpoints ORDER BY size DESC, time_ms DESC LIMIT 1"
            )
            db.commit()
        broken = await ops.check_ledger(hub.ledger, hub.db, key, None)
        assert not broken.ok
        assert "does not match its tree" in str(broken.problem)

        # The hub's own loop publishes the result as a gauge.
        task = asyncio.create_task(hub_app._self_check(hub, interval_s=3600))
        await asyncio.sleep(0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        got = samples(running)
        assert got[("zvh_gateway_ledger_self_check_success", ())] == 0
        assert got[("zvh_gateway_ledger_self_check_timestamp_seconds", ())] > time.time() - 60


async def test_self_check_of_a_hub_without_a_head_fails(tmp_path: Path) -> None:
    async with run_hub(tmp_path) as running:
        hub = running.net.hub
        hub.ledger._head = None
        result = await ops.check_ledger(hub.ledger, hub.db, hub.keys.signing_key, None)
        assert (result.ok, result.problem) == (False, "no signed checkpoint")


async def test_the_hub_publishes_the_self_check_at_start(tmp_path: Path) -> None:
    async with run_hub(tmp_path) as running:
        await asyncio.sleep(0.1)
        got = samples(running)
        assert got[("zvh_gateway_ledger_self_check_success", ())] == 1
        assert got[("zvh_gateway_ledger_checkpoint_timestamp_seconds", ())] > time.time() - 60


# -- expiry of keys, accessions and the protocol -------------------------------------------


async def test_expiry_gauges_follow_keys_protocol_and_accessions(tmp_path: Path) -> None:
    async with run_hub(tmp_path) as running:
        net, hub = running.net, running.net.hub
        clock = SystemClock()
        now = clock.now_ms()
        await hub_app._publish_gauges(hub)
        names = {n for (n, _) in samples(running)}
        assert "zvh_gateway_directory_key_expiry_timestamp_seconds" not in names

        # Police's keys end in 10 days; protocol v2 ends in 20 days.
        police = net.keys["politie-test"]
        admin.add_partner(
            net.settings,
            clock,
            public=police.public(),
            role="partner",
            domain="straf",
            name=None,
            valid_until_ms=now + 10 * DAY_MS,
        )
        rec = admin.publish_protocol(
            net.settings,
            clock,
            text=PROTOCOL_TEXT.encode() + b"v2\n",
            title="Privacyprotocol",
            themes=["huiselijk-geweld"],
            valid_until_ms=now + 20 * DAY_MS,
        )
        await hub.directory.reload(force=True)
        await net.client("vt-test").accede(rec.protocol_id)
        await hub_app._publish_gauges(hub)
        got = samples(running)
        key = ("zvh_gateway_directory_key_expiry_timestamp_seconds", (("org", "politie-test"),))
        assert got[key] == (now + 10 * DAY_MS) / 1000
        accession = (
            "zvh_gateway_membership_accession_expiry_timestamp_seconds",
            (("org", "vt-test"),),
        )
        assert got[accession] == (now + 20 * DAY_MS) / 1000
        protocol = (
            "zvh_gateway_membership_protocol_expiry_timestamp_seconds",
            (("protocol", rec.protocol_id),),
        )
        assert got[protocol] == (now + 20 * DAY_MS) / 1000
        # Only members of the protocol in force: the others acceded to v1 only.
        accessions = [k for k in got if k[0] == accession[0]]
        assert accessions == [accession]

        # A revoked organisation stops alerting: its label goes.
        admin.revoke_partner(net.settings, clock, "politie-test")
        admin.revoke_partner(net.settings, clock, "vt-test")
        await hub.directory.reload(force=True)
        await hub_app._publish_gauges(hub)
        got = samples(running)
        assert key not in got
        assert accession not in got
        assert protocol in got


# -- request ids, the access log, long-polls at shutdown -----------------------------------


async def test_request_id_header_and_access_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    async with (
        run_hub(tmp_path) as running,
        aiohttp.ClientSession() as session,
        session.get(
            running.net.url + "/cases/C-9/close?bsn=1",
            headers={"X-Request-Id": "client-chosen"},
        ) as resp,
    ):
        assert resp.status == 404
        request_id = resp.headers["X-Request-Id"]
    assert request_id != "client-chosen"
    assert len(request_id) == 32
    (line,) = [
        r.__dict__
        for r in caplog.records
        if r.name == "gateway.access" and r.__dict__["status"] == 404
    ]
    assert (line["route"], line["method"], line["org"]) == ("unmatched", "GET", None)
    assert "C-9" not in str(line)


def test_json_formatter_adds_the_request_id_of_the_context() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "hello", None, None)
    assert "request_id" not in JsonFormatter().format(record)
    with request_context("abc123"):
        assert '"request_id": "abc123"' in JsonFormatter().format(record)


async def test_a_waiting_long_poll_answers_at_once_when_the_hub_stops(tmp_path: Path) -> None:
    async with run_hub(tmp_path) as running:
        client = running.net.client("vt-test")
        poll = asyncio.create_task(client.fetch(wait=30))
        await asyncio.sleep(0.3)
        assert not poll.done()
        started = time.monotonic()
        await running.server.stop()
        assert await asyncio.wait_for(poll, 5) == []
        assert time.monotonic() - started < 2
        running.server = hub_app.HubServer(hub_app.build_hub(running.net.settings))
        await running.server.start()  # so that run_hub can stop it again


# -- the metric names the issue asks for ----------------------------------------------------

REQUIRED = {
    "zvh_gateway_build_info",
    "zvh_gateway_http_requests_total",
    "zvh_gateway_http_request_duration_seconds",
    "zvh_gateway_policy_decisions_total",
    "zvh_gateway_exchange_steps_total",
    "zvh_gateway_inbox_backlog_messages",
    "zvh_gateway_inbox_oldest_message_age_seconds",
    "zvh_gateway_wat_requests_pending",
    "zvh_gateway_wat_requests_overdue",
    "zvh_gateway_ledger_entries",
    "zvh_gateway_storage_transaction_duration_seconds",
    "zvh_gateway_ledger_checkpoint_timestamp_seconds",
    "zvh_gateway_ledger_self_check_success",
    "zvh_gateway_federation_call_duration_seconds",
    "zvh_gateway_federation_call_errors_total",
    "zvh_gateway_ratelimit_rejections_total",
    "zvh_gateway_directory_key_expiry_timestamp_seconds",
    "zvh_gateway_membership_accession_expiry_timestamp_seconds",
}


def exposed_names(metrics: Metrics) -> set[str]:
    """Every sample name the registry can expose (suffixes included)."""
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "info":
            names.add(family.name + "_info")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def test_the_metrics_the_issue_asks_for_exist_and_are_named_by_the_convention() -> None:
    metrics = Metrics("hub")
    names = exposed_names(metrics)
    assert names >= REQUIRED, REQUIRED - names
    for family in metrics.registry.collect():
        assert family.name.startswith("zvh_gateway_"), family.name
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client adds it once
