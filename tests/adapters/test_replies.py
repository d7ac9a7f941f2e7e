"""The partner system's replies through the webhook, in process against a real hub:
a wat-request released from the reply, a dat-request answered later through the local
API, an unusable reply counted as a failed attempt until it is a dead letter, and
retry through the local API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.adapters.adapter_config import load_adapter_settings, render_adapter_config
from gateway.adapters.delivery import safe_filename
from gateway.adapters.runner import Adapter, build_adapter
from tests.adapters.support import AdapterSetup, FakeSystem, LocalClient, answers_nothing
from tests.conftest import BSN, Network, free_port, synthetic_pid
from tests.policy.support import BASIS

ZVH, POLICE = "zvh-test", "politie-test"
CASE = "ZVH-REPLY-1"


async def _adapter(tmp_path: Path, net: Network, org: str, webhook: str) -> Adapter:
    folder = tmp_path / org
    folder.mkdir()
    key_file = folder / "key.json"
    net.keys[org].save(key_file)
    config = folder / "adapter.toml"
    text = render_adapter_config(
        org=org,
        hub_url=net.url,
        key_file=str(key_file),
        port=free_port(),
        webhook_url=webhook,
        max_attempts=2,
        backoff_base_s=0.05,
        backoff_max_s=0.1,
    )
    config.write_text(text.replace("poll_wait_s = 20", "poll_wait_s = 1"), encoding="utf-8")
    adapter = build_adapter(load_adapter_settings(config))
    await adapter.start()
    return adapter


def _client(adapter: Adapter, session: aiohttp.ClientSession) -> LocalClient:
    s = adapter.settings
    token = s.local.token_file.read_text(encoding="utf-8").strip()
    setup = AdapterSetup(
        s.adapter.org, s.adapter.data_dir, s.source or Path(), s.local.port, token, None
    )
    return LocalClient(setup, session)


class Police:
    """Answers a wat-request from the reply; a dat-request later; a refuse badly."""

    def __init__(self) -> None:
        self.mode = "release"

    async def respond(self, item: dict[str, Any]) -> dict[str, Any] | None:
        if item["kind"] == "dat-request":
            return None  # "we look it up and answer later"
        if item["kind"] == "wat-request" and self.mode == "release":
            return {"decision": "release", "body": {"contact": "wijkagent, toestel 1182"}}
        if item["kind"] == "wat-request":
            return {"decision": "known"}  # not an answer to a wat-request
        return None


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_replies_answers_and_dead_letters(
    tmp_path: Path, network: Network, session: aiohttp.ClientSession
) -> None:
    police_logic = Police()
    police_system = FakeSystem("police", police_logic.respond)
    case_system = FakeSystem("case system", answers_nothing)
    await police_system.start()
    await case_system.start()
    zvh = await _adapter(tmp_path, network, ZVH, case_system.url)
    police = await _adapter(tmp_path, network, POLICE, police_system.url)
    try:
        z, p = _client(zvh, session), _client(police, session)
        await z.ok(
            "/local/v1/cases",
            {
                "case_ref": CASE,
                "theme": "huiselijk-geweld",
                "subjects": [{"subject_ref": "S1", "pid": synthetic_pid()}],
                "participants": [POLICE],
            },
        )
        dat = await z.ok(
            "/local/v1/dat-requests",
            {
                "case_ref": CASE,
                "subject_ref": "S1",
                "recipients": [POLICE],
                "body": {"bsn": BSN},
            },
        )
        # The police system took the request without deciding; it answers later.
        await police_system.wait_for(lambda r: any(i["kind"] == "dat-request" for _, i in r))
        status, problem, _ = await p.post(
            "/local/v1/answers", {"exchange_id": dat["exchange_id"], "decision": "release"}
        )
        assert status == 400
        assert problem["errors"][0]["loc"] == ["decision"]
        answered = await p.ok(
            "/local/v1/answers",
            {
                "exchange_id": dat["exchange_id"],
                "decision": "known",
                "body": {"contact": "x"},
            },
        )
        assert answered["exchange_id"] == dat["exchange_id"]
        await case_system.wait_for(lambda r: any(i["kind"] == "dat-answer" for _, i in r))

        # A wat-request: released straight from the webhook reply.
        wat_body = {
            "case_ref": CASE,
            "subject_ref": "S1",
            "holder": POLICE,
            "categories": ["contact"],
            "purpose": "afstemming hulpverlening",
            "processing_activity": "mda-plus-plus",
            "legal_basis": BASIS,
            "body": {"vraag": "contactgegevens"},
        }
        wat = await z.ok("/local/v1/wat-requests", wat_body)
        await case_system.wait_for(lambda r: any(i["kind"] == "wat-answer" for _, i in r))
        released = next(i for _, i in case_system.received if i["kind"] == "wat-answer")
        assert (released["exchange_id"], released["decision"]) == (wat["exchange_id"], "release")
        assert released["body"] == {"contact": "wijkagent, toestel 1182"}
        wat_item = next(i for _, i in police_system.received if i["kind"] == "wat-request")
        assert wat_item["wat"]["categories"] == ["contact"]

        # An unusable reply is a failed attempt; after two, a dead letter.
        police_logic.mode = "bad"
        second = await z.ok("/local/v1/wat-requests", wat_body)

        async def dead() -> list[dict[str, Any]]:
            async with session.get(
                p.setup.url + "/local/v1/dead-letters",
                headers={"Authorization": f"Bearer {p.setup.token}"},
            ) as r:
                data: dict[str, Any] = await r.json()
                return list(data["dead_letters"])

        letters: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + 20
        while not letters and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)  # polling the adapter's list
            letters = await dead()
        assert [(d["exchange_id"], d["attempts"], d["last_error"]) for d in letters] == [
            (second["exchange_id"], 2, "invalid reply")
        ]
        # Retried from the local API once the system replies properly.
        police_logic.mode = "release"
        retried = await p.ok(f"/local/v1/dead-letters/{letters[0]['message_id']}/retry", {})
        assert retried == {"retried": [letters[0]["message_id"]]}
        await case_system.wait_for(
            lambda r: len([i for _, i in r if i["kind"] == "wat-answer"]) == 2
        )
        status, _, _ = await p.post("/local/v1/dead-letters/99999/retry", {})
        assert status == 404
        # Every attempt, with the same key for the same item.
        keys = [k for k, i in police_system.received if i["exchange_id"] == second["exchange_id"]]
        assert len(keys) == 3
        assert len(set(keys)) == 1
    finally:
        await zvh.stop()
        await police.stop()
        await police_system.stop()
        await case_system.stop()


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("verslag.pdf", "verslag.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        (".bashrc", "bashrc"),
        ("", "bijlage-3"),
        ("..", "bijlage-3"),
        ("a/b/ /", "bijlage-3"),
        ("rapport<script>.pdf", "rapport_script_.pdf"),
    ],
)
def test_received_file_names_are_made_harmless(given: str, safe: str) -> None:
    assert safe_filename(given, 3) == safe
