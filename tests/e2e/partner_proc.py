"""One partner organisation as its own OS process, driving a hub with `HubClient`.

Run as `python tests/e2e/partner_proc.py '<spec JSON>'`. It prints exactly one JSON
line on stdout (its result, `"ok": true|false`) and exits 0 on success, 1 otherwise.

Every process first signs its organisation's accession to the region's privacy
protocol (after checking the text against its published hash), then:
- `zvh`: registers a case, sends one dat-request to `recipients`, waits for every
  recipient's answer, acks them and reports what it received.
- `responder`: prints `{"event": "ready"}` once its accession is recorded, long-polls
  its inbox, opens the dat-request, answers `decision` with a sealed contact route,
  acks, and reports what it saw inside the envelope.

Self-contained on purpose (no imports from the test package): it is what a partner
system integrating with the client library would look like.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from gateway.adapters.client import HubClient
from gateway.crypto.keys import OrgKeys


async def run_zvh(client: HubClient, spec: dict[str, Any], deadline: float) -> dict[str, Any]:
    recipients: list[str] = list(spec["recipients"])
    case = await client.register_case(
        spec["case_ref"],
        spec.get("theme", "huiselijk-geweld"),
        [(spec["subject_ref"], spec["pid"])],
        recipients,
    )
    if case.get("status") != "open":
        raise RuntimeError(f"case not registered: {case}")
    sent = await client.dat_request(
        spec["case_ref"], spec["subject_ref"], recipients, spec["person"]
    )
    xid = str(sent["exchange_id"])
    answers: dict[str, dict[str, Any]] = {}
    while set(answers) != set(recipients):
        if time.monotonic() > deadline:
            raise TimeoutError(f"answers so far: {sorted(answers)}")
        messages = await client.fetch(wait=2)
        for m in messages:
            if m.kind == "dat-answer" and m.exchange_id == xid:
                answers[m.sender] = {"decision": m.decision, "body": m.body}
        if messages:
            acked = await client.ack([m.message_id for m in messages])
            if sorted(acked) != sorted(m.message_id for m in messages):
                raise RuntimeError(f"ack mismatch: {acked}")
    leftover = await client.fetch(wait=0)
    return {
        "case_ledger": case["ledger"],
        "exchange_id": xid,
        "delivered": sent["delivered"],
        "denied": sent["denied"],
        "request_ledger": sent["ledger"],
        "answers": answers,
        "inbox_empty_after_ack": not leftover,
    }


async def run_responder(client: HubClient, spec: dict[str, Any], deadline: float) -> dict[str, Any]:
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("no dat-request arrived")
        messages = await client.fetch(wait=2, limit=10)
        requests = [m for m in messages if m.kind == "dat-request"]
        if not requests:
            continue
        if len(requests) != 1 or len(messages) != 1:
            raise RuntimeError(f"expected one dat-request, got {len(messages)} messages")
        request = requests[0]
        answered = await client.answer(request, spec["decision"], {"contact": spec["contact"]})
        acked = await client.ack([request.message_id])
        if acked != [request.message_id]:
            raise RuntimeError(f"ack mismatch: {acked}")
        leftover = await client.fetch(wait=0)
        return {
            "exchange_id": request.exchange_id,
            "from": request.sender,
            "case_ref": request.case_ref,
            "subject_ref": request.subject_ref,
            "seen": request.body,
            "decision": spec["decision"],
            "answer_ledger": answered["ledger"],
            "inbox_empty_after_ack": not leftover,
        }


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + float(spec.get("timeout_s", 20))
    keys = OrgKeys.load(spec["key_file"])
    async with HubClient(spec["url"], keys, timeout_s=10.0) as client:
        accession = await client.accede()
        if spec["role"] == "responder":
            print(json.dumps({"event": "ready", "org": keys.org}), flush=True)
        if spec["role"] == "zvh":
            result = await run_zvh(client, spec, deadline)
        elif spec["role"] == "responder":
            result = await run_responder(client, spec, deadline)
        else:
            raise ValueError(f"unknown role {spec['role']!r}")
    return {"ok": True, "org": keys.org, "role": spec["role"], "accession": accession, **result}


if __name__ == "__main__":
    given: dict[str, Any] = json.loads(sys.argv[1])
    try:
        out = asyncio.run(main(given))
    except Exception as exc:
        print(json.dumps({"ok": False, "role": given.get("role"), "error": repr(exc)}), flush=True)
        sys.exit(1)
    print(json.dumps(out, ensure_ascii=False), flush=True)
