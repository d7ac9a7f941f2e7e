"""Issue 8, acceptance 1 and 5 with real processes: a hub and three partner adapters,
each `python -m gateway ...`, and the partners' own systems beside them.

- The ZVH's case system uses the local API (and receives answers on its webhook).
- The police system is a small web app with its own records: it answers dat-requests
  automatically through its adapter's webhook.
- The GGZ runs a legacy system that only reads and writes files (the file drop).

Every local-API request and response is checked against the adapter's own OpenAPI
document, served by the running adapter.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import openapi_spec_validator
import pytest

from tests.adapters.support import (
    AdapterProcess,
    FakeSystem,
    LocalClient,
    OpenApiChecker,
    answers_nothing,
    init_adapter,
    read_json,
    set_config,
    wait_until,
    write_dropped,
)
from tests.conftest import BIRTH, BSN, NAME, synthetic_pid
from tests.e2e.hubproc import HubProcess, Processes, create_hub

pytestmark = pytest.mark.e2e

HUB = "hub-adapters"
ZVH = "zvh-adapters"
POLICE = "politie-adapters"
GGZ = "ggz-adapters"
PARTNERS = ((ZVH, "zvh", "bestuur"), (POLICE, "partner", "straf"), (GGZ, "partner", "zorg"))
BIRTH_DATE = f"{BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}"
PERSON = {"bsn": BSN, "name": NAME, "birth_date": BIRTH_DATE}
POLICE_CONTACT = "wijkagent team Noord-Oost, 0900-8844 toestel 1182"


class PoliceSystem:
    """The police's own records; a dat-request is answered from them, nothing else."""

    def __init__(self) -> None:
        self.records = {BSN: {"contact": POLICE_CONTACT}}

    async def respond(self, item: dict[str, Any]) -> dict[str, Any] | None:
        if item["kind"] != "dat-request":
            return None
        record = self.records.get(str((item.get("body") or {}).get("bsn")))
        if record is None:
            return {"decision": "not-known"}
        return {"decision": "known", "body": record}


async def test_webhook_and_file_drop_partners_answer_the_zvh(
    tmp_path: Path, procs: Processes, session: aiohttp.ClientSession
) -> None:
    setup = create_hub(tmp_path, HUB, PARTNERS)
    HubProcess(setup, procs).start()
    police_system = FakeSystem("police", PoliceSystem().respond)
    case_system = FakeSystem("zvh case system", answers_nothing)
    await police_system.start()
    await case_system.start()
    try:
        zvh = init_adapter(tmp_path, setup, ZVH, webhook_url=case_system.url)
        police = init_adapter(tmp_path, setup, POLICE, webhook_url=police_system.url)
        # The police system accepts only its own adapter (a bearer token of its own).
        set_config(police, r"^# token_file = .*$", 'token_file = "webhook.token"')
        ggz = init_adapter(tmp_path, setup, GGZ, filedrop=True)
        for a in (zvh, police, ggz):
            AdapterProcess(a, procs).start()
        webhook_token = police.dir / "webhook.token"
        assert webhook_token.stat().st_mode & 0o077 == 0
        police_system.expected_token = webhook_token.read_text(encoding="utf-8").strip()

        async with session.get(zvh.url + "/local/v1/openapi.json") as resp:
            assert resp.status == 200
            document = await resp.json()
        openapi_spec_validator.validate(document)
        checker = OpenApiChecker(document)
        clients = {a.org: LocalClient(a, session, checker) for a in (zvh, police, ggz)}
        for client in clients.values():
            accession = await client.ok("/local/v1/accessions", {})
            assert accession["org"] == client.setup.org

        z = clients[ZVH]
        case = await z.ok(
            "/local/v1/cases",
            {
                "case_ref": "ZVH-AD-0001",
                "theme": "huiselijk-geweld",
                "subjects": [{"subject_ref": "S1", "pid": synthetic_pid()}],
                "participants": [POLICE, GGZ],
            },
        )
        assert case["status"] == "open"
        request = {
            "case_ref": "ZVH-AD-0001",
            "subject_ref": "S1",
            "recipients": [POLICE, GGZ],
            "body": PERSON,
        }
        status, sent, _ = await z.post("/local/v1/dat-requests", request, key="zvh-dat-1")
        assert status == 202, sent
        assert sorted(sent["delivered"]) == [GGZ, POLICE]
        xid = sent["exchange_id"]

        # The same key and body: the stored answer, marked as a replay; another body: 409.
        again_status, again, headers = await z.post(
            "/local/v1/dat-requests", request, key="zvh-dat-1"
        )
        assert (again_status, again) == (202, sent)
        assert headers.get("Idempotent-Replayed") == "true"
        other = {**request, "recipients": [POLICE]}
        status, problem, _ = await z.post("/local/v1/dat-requests", other, key="zvh-dat-1")
        assert (status, problem["code"]) == (409, "idempotency-key-reused")

        # The police system got the opened request once and answered from its records.
        await police_system.wait_for(lambda r: len(r) >= 1)
        key, item = police_system.received[0]
        assert key == f"inbox-{item['message_id']}"
        assert (item["kind"], item["exchange_id"], item["from"]) == ("dat-request", xid, ZVH)
        assert item["body"] == PERSON

        # The legacy GGZ system reads the request from out/ and answers with a CSV file.
        assert ggz.filedrop is not None
        out = ggz.filedrop / "out"
        await wait_until(lambda: any(out.glob("*-dat-request.json")), what="GGZ out/ file")
        [dropped] = list(out.glob("*-dat-request.json"))
        seen = read_json(dropped)
        assert (seen["exchange_id"], seen["body"]) == (xid, PERSON)
        write_dropped(
            ggz.filedrop / "in",
            "antwoord-1.csv",
            "type,exchange_id,decision,body.contact\n"
            f"answer,{xid},not-known,crisisdienst regio Zuid\n",
        )

        # The ZVH's case system receives both answers through its webhook.
        def both(received: list[tuple[str, dict[str, Any]]]) -> bool:
            return {i["from"] for _, i in received if i["kind"] == "dat-answer"} == {POLICE, GGZ}

        await case_system.wait_for(both)
        answers = {i["from"]: i for _, i in case_system.received if i["kind"] == "dat-answer"}
        assert answers[POLICE]["decision"] == "known"
        assert answers[POLICE]["body"] == {"contact": POLICE_CONTACT}
        assert answers[GGZ]["decision"] == "not-known"
        assert answers[GGZ]["body"] == {"contact": "crisisdienst regio Zuid"}
        assert all(i["exchange_id"] == xid for i in answers.values())

        # The dropped file went to done/ with the hub's answer beside it.
        done = ggz.filedrop / "done"
        await wait_until((done / "antwoord-1.csv.result.json").exists, what="done/")
        result = read_json(done / "antwoord-1.csv.result.json")
        assert result["results"][0]["status"] == 202
        assert not list((ggz.filedrop / "in").iterdir())
        # Each partner system saw each item exactly once.
        await asyncio.sleep(0.5)
        assert len(police_system.received) == 1
        assert len([k for k, i in case_system.received if i["kind"] == "dat-answer"]) == 2
        # The adapters' databases hold sealed envelopes and hashes, never the plaintext:
        # not the request the ZVH sent, nor what the partners received or answered.
        secrets = [
            BSN,
            NAME,
            NAME.split()[-1],
            BIRTH_DATE,
            POLICE_CONTACT,
            "crisisdienst regio Zuid",
        ]
        for a in (zvh, police, ggz):
            for path in sorted((a.dir / "data").glob("adapter.sqlite3*")):
                data = path.read_bytes().lower()
                leaked = [s for s in secrets if s.lower().encode() in data]
                assert leaked == [], (path, leaked)
        zvh_db = b"".join(p.read_bytes() for p in (zvh.dir / "data").glob("adapter.sqlite3*"))
        assert xid.encode() in zvh_db  # the search reads real content (file and WAL)
    finally:
        await police_system.stop()
        await case_system.stop()
