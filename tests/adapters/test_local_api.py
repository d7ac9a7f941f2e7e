"""The local API in process, against a real hub: bearer token, idempotency keys
(durable across a restart of the adapter), problems with field paths, and acceptance
5: every request and response validated against the served OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openapi_spec_validator
import pytest

from gateway.adapters.adapter_config import load_adapter_settings, render_adapter_config
from gateway.adapters.local_openapi import openapi_document
from gateway.adapters.runner import Adapter, build_adapter
from tests.adapters.support import AdapterSetup, LocalClient, OpenApiChecker
from tests.conftest import BSN, NAME, Network, free_port, synthetic_pid

ZVH = "zvh-test"
CASE = "ZVH-LOCAL-1"


def _write_config(tmp_path: Path, net: Network, hub_url: str | None = None) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    key_file = folder / "zvh.key.json"
    if not key_file.exists():
        net.keys[ZVH].save(key_file)
    config = folder / "adapter.toml"
    config.write_text(
        render_adapter_config(
            org=ZVH,
            hub_url=hub_url or net.url,
            key_file=str(key_file),
            port=free_port(),
            webhook_url="http://127.0.0.1:9/unused",
        ).replace("poll_wait_s = 20", "poll_wait_s = 1"),
        encoding="utf-8",
    )
    return config


async def _start(config: Path) -> Adapter:
    adapter = build_adapter(load_adapter_settings(config))
    await adapter.start()
    return adapter


def _setup(adapter: Adapter) -> AdapterSetup:
    s = adapter.settings
    token = s.local.token_file.read_text(encoding="utf-8").strip()
    return AdapterSetup(
        ZVH, s.adapter.data_dir.parent, s.source or Path(), s.local.port, token, None
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def adapter(tmp_path: Path, network: Network) -> AsyncIterator[Adapter]:
    a = await _start(_write_config(tmp_path, network))
    try:
        yield a
    finally:
        await a.stop()


def _case() -> dict[str, Any]:
    return {
        "case_ref": CASE,
        "theme": "huiselijk-geweld",
        "subjects": [{"subject_ref": "S1", "pid": synthetic_pid()}],
        "participants": ["politie-test"],
    }


def _dat() -> dict[str, Any]:
    return {
        "case_ref": CASE,
        "subject_ref": "S1",
        "recipients": ["politie-test"],
        "body": {"bsn": BSN, "name": NAME},
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    openapi_spec_validator.validate(doc)
    assert doc["openapi"] == "3.1.0"
    for path in (
        "/local/v1/dat-requests",
        "/local/v1/wat-requests",
        "/local/v1/answers",
        "/local/v1/messages",
        "/local/v1/referrals",
    ):
        params = doc["paths"][path]["post"]["parameters"]
        assert [p["name"] for p in params] == ["Idempotency-Key"]
    assert "inboxItem" in doc["webhooks"]


async def test_token_is_required(adapter: Adapter, session: aiohttp.ClientSession) -> None:
    url = _setup(adapter).url + "/local/v1/dat-requests"
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": "Basic " + _setup(adapter).token},
    ):
        async with session.post(url, json=_dat(), headers={**headers, "Idempotency-Key": "k"}) as r:
            assert r.status == 401
            assert r.content_type == "application/problem+json"
            problem = await r.json()
            assert problem["code"] == "unauthenticated"
            assert _setup(adapter).token not in json.dumps(problem)
    # The document itself is public (it holds no secret).
    async with session.get(_setup(adapter).url + "/local/v1/openapi.json") as r:
        assert r.status == 200
        assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_requests_and_responses_follow_the_document(
    adapter: Adapter, session: aiohttp.ClientSession
) -> None:
    client = LocalClient(_setup(adapter), session, OpenApiChecker(openapi_document()))
    assert (await client.post("/local/v1/cases", _case()))[0] == 201
    status, sent, _ = await client.post("/local/v1/dat-requests", _dat())
    assert status == 202
    assert sent["delivered"] == ["politie-test"]
    # A validation error: field paths, no values.
    bad = {**_dat(), "recipients": ["Not An Org"], "body": {"bsn": BSN}, "extra": 1}
    status, problem, _ = await client.post("/local/v1/dat-requests", bad)
    assert status == 400
    locs = [e["loc"] for e in problem["errors"]]
    assert ["recipients", 0] in locs
    assert ["extra"] in locs
    assert "Not An Org" not in json.dumps(problem)
    # Refused by the hub: its problem, passed on (a subject not in the case).
    status, problem, _ = await client.post(
        "/local/v1/dat-requests", {**_dat(), "subject_ref": "S9"}
    )
    assert status == 400
    assert problem["code"] == "invalid-request"
    # Answering an exchange that never reached this adapter.
    answer = {"exchange_id": sent["exchange_id"], "decision": "known"}
    status, problem, _ = await client.post("/local/v1/answers", answer)
    assert (status, problem["code"]) == (404, "not-found")
    # A wat-request refused by the policy (no dat answer yet): 403 with the ledger.
    wat = {
        "case_ref": CASE,
        "subject_ref": "S1",
        "holder": "politie-test",
        "categories": ["politie-justitie"],
        "purpose": "risicotaxatie",
        "processing_activity": "zvh-casusoverleg",
        "legal_basis": {},
        "body": {"q": "x"},
    }
    status, problem, _ = await client.post("/local/v1/wat-requests", wat)
    assert status == 403
    assert problem["code"] in ("dat-required", "legal-basis-missing", "category-not-allowed")
    # Body not JSON, and no key: 400s with a location.
    url = client.setup.url + "/local/v1/dat-requests"
    auth = {"Authorization": f"Bearer {client.setup.token}"}
    async with session.post(url, data=b"{", headers={**auth, "Idempotency-Key": "x1"}) as r:
        assert r.status == 400
        assert (await r.json())["errors"][0]["loc"] == ["body"]
    async with session.post(url, json=_dat(), headers=auth) as r:
        assert r.status == 400
        assert (await r.json())["errors"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_idempotency_keys_survive_a_restart(
    tmp_path: Path, network: Network, session: aiohttp.ClientSession
) -> None:
    config = _write_config(tmp_path, network)
    first = await _start(config)
    try:
        client = LocalClient(_setup(first), session)
        await client.ok("/local/v1/cases", _case(), key="case-1")
        status, sent, headers = await client.post("/local/v1/dat-requests", _dat(), key="dat-1")
        assert status == 202
        assert "Idempotent-Replayed" not in headers
    finally:
        await first.stop()
    second = await _start(config)
    try:
        client = LocalClient(_setup(second), session)
        # Same key and body (fields in another order): the stored response.
        reordered = dict(reversed(list(_dat().items())))
        status, again, headers = await client.post("/local/v1/dat-requests", reordered, key="dat-1")
        assert (status, again) == (202, sent)
        assert headers["Idempotent-Replayed"] == "true"
        status, problem, _ = await client.post(
            "/local/v1/dat-requests", {**_dat(), "body": {"bsn": BSN}}, key="dat-1"
        )
        assert (status, problem["code"]) == (409, "idempotency-key-reused")
        # The same key for another operation is a reuse too.
        status, problem, _ = await client.post("/local/v1/cases", _case(), key="dat-1")
        assert (status, problem["code"]) == (409, "idempotency-key-reused")
    finally:
        await second.stop()


async def test_a_call_the_hub_never_answered_is_resent_with_the_same_bytes(
    adapter: Adapter, session: aiohttp.ClientSession
) -> None:
    """The hub becomes unreachable after the adapter read its directory: 502, and the
    key stays open with its sealed call; a retry with the same key sends that call, so
    the exchange id is the one sealed the first time."""
    client = LocalClient(_setup(adapter), session)
    await client.ok("/local/v1/cases", _case())
    await client.ok("/local/v1/dat-requests", _dat())  # the directory is read and cached
    hub_url = adapter.client.base_url
    adapter.client.base_url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    try:
        status, problem, _ = await client.post("/local/v1/dat-requests", _dat(), key="dat-lost")
        assert (status, problem["code"]) == (502, "hub-unavailable")
    finally:
        adapter.client.base_url = hub_url
    record = await adapter.store.get_idempotency("dat-lost")
    assert record is not None
    assert record.state == "started"
    assert record.hub_request is not None
    sealed = record.hub_request["body"]["envelopes"][0]
    status, sent, _ = await client.post("/local/v1/dat-requests", _dat(), key="dat-lost")
    assert status == 202
    assert sent["exchange_id"] == sealed["exchange_id"]
    done = await adapter.store.get_idempotency("dat-lost")
    assert done is not None
    assert (done.state, done.hub_request) == ("done", record.hub_request)


async def test_health_says_when_a_background_task_stopped(
    adapter: Adapter, session: aiohttp.ClientSession
) -> None:
    url = _setup(adapter).url + "/healthz"
    async with session.get(url) as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    poller = next(t for t in adapter._tasks if t.get_name() == "adapter-poller")
    poller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await poller
    async with session.get(url) as resp:
        assert (resp.status, await resp.json()) == (503, {"status": "failing"})
