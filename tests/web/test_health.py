"""The ops endpoints (PROTOCOL §2, §7): `/healthz` and `/readyz` answer unsigned on the
API listener and on the metrics listener, which also serves `/metrics`."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest

from tests.conftest import Network
from tests.web.conftest import RunningHub
from tests.web.helpers import Wire, assert_ok, assert_problem

HEALTH = {"/healthz": {"status": "ok"}, "/readyz": {"ready": True}}


@pytest.mark.parametrize("target", HEALTH)
async def test_health_endpoints_answer_unsigned_on_the_api_listener(
    network: Network, wire: Wire, target: str
) -> None:
    assert assert_ok(await wire.send("GET", target), 200) == HEALTH[target]


async def metrics_get(running: RunningHub, path: str) -> tuple[int, str]:
    port = running.net.settings.http.metrics_port
    assert port is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        return resp.status, await resp.text()


@pytest.mark.parametrize("target", HEALTH)
async def test_health_endpoints_answer_on_the_metrics_listener(
    metered: RunningHub, target: str
) -> None:
    status, text = await metrics_get(metered, target)
    assert status == 200
    assert json.loads(text) == HEALTH[target]


async def test_metrics_count_successful_requests_by_status(metered: RunningHub) -> None:
    net, wire = metered.net, metered.wire
    assert_ok(await wire.signed(net.keys["politie-test"], "GET", "/api/v1/directory"), 200)
    status, text = await metrics_get(metered, "/metrics")
    assert status == 200
    assert re.search(
        r'^zvh_gateway_http_requests_total\{[^}]*route="/api/v1/directory"[^}]*status="200"',
        text,
        re.MULTILINE,
    )


async def test_metrics_count_problems_by_their_status(metered: RunningHub) -> None:
    assert_problem(await metered.wire.send("GET", "/api/v1/directory"), 401, "unauthenticated")
    status, text = await metrics_get(metered, "/metrics")
    assert status == 200
    requests = [
        line for line in text.splitlines() if line.startswith("zvh_gateway_http_requests_total{")
    ]
    assert any('status="401"' in line for line in requests), requests
    assert not any('status="500"' in line for line in requests), requests
