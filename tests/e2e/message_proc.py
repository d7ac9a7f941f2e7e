"""One partner organisation as its own OS process, exchanging a secure case message
with an attachment through a hub, with `HubClient` (issue #8).

Run as `python tests/e2e/message_proc.py '<spec JSON>'`. It prints JSON lines on
stdout, the last one its result (`"ok": true|false`, with its peak RSS), and exits
0 on success, 1 otherwise.

- `sender` (the region's ZVH): signs its accession, registers a case with the
  receiver as participant, encrypts and uploads `file`, sends one message carrying
  it, and reports the descriptor (without the key) and its timings.
- `receiver`: signs its accession, prints `{"event": "ready"}`, waits for `go_file`
  to exist (if given), long-polls until the message arrives, downloads and decrypts
  the attachment to `dest`, checks its hash, acknowledges the message and reports.

Self-contained on purpose (no imports from the test package): it is what a partner
system integrating with the client library would look like.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from gateway.adapters.client import HubClient
from gateway.crypto.keys import OrgKeys


def peak_rss_kib() -> int:
    """This process's peak resident set in KiB: VmHWM of /proc/self/status, not
    ru_maxrss, which Linux carries over from the parent across fork and exec (a
    child of a large test runner would report the runner's size)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def run_sender(client: HubClient, spec: dict[str, Any]) -> dict[str, Any]:
    await client.register_case(
        spec["case_ref"], "huiselijk-geweld", [("S1", spec["pid"])], [spec["to"]]
    )
    t0 = time.monotonic()
    descriptor = await client.attach(Path(spec["file"]), media_type="application/pdf")
    uploaded = time.monotonic()
    sent = await client.send_message(
        spec["case_ref"],
        [spec["to"]],
        {"text": spec["text"]},
        subject_ref="S1",
        attachments=[descriptor],
    )
    return {
        "upload_s": uploaded - t0,
        "sent_s": time.monotonic() - t0,
        "delivered": sent["delivered"],
        "ledger": sent["ledger"],
        "blob_id": descriptor["blob_id"],
        "size": descriptor["size"],
        "sha256_plain": descriptor["sha256_plain"],
    }


async def run_receiver(client: HubClient, spec: dict[str, Any], deadline: float) -> dict[str, Any]:
    go = spec.get("go_file")
    while go is not None and not await asyncio.to_thread(Path(go).exists):
        if time.monotonic() > deadline:
            raise TimeoutError("never told to go")
        await asyncio.sleep(0.05)
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("no message arrived")
        messages = [m for m in await client.fetch(wait=2) if m.kind == "message"]
        if messages:
            break
    (msg,) = messages
    if msg.error is not None or msg.body is None:
        raise RuntimeError(f"message failed its checks: {msg.error}")
    (attachment,) = msg.body["attachments"]
    dest = Path(spec["dest"])
    t0 = time.monotonic()
    await client.fetch_attachment(attachment, dest)
    fetched = time.monotonic() - t0
    acked = await client.ack([msg.message_id])
    return {
        "from": msg.sender,
        "text": msg.body["text"],
        "filename": attachment["filename"],
        "fetch_s": fetched,
        "sha256": file_sha256(dest),
        "descriptor_sha256_plain": attachment["sha256_plain"],
        "acked": acked == [msg.message_id],
    }


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + float(spec.get("timeout_s", 60))
    keys = OrgKeys.load(spec["key_file"])
    async with HubClient(spec["url"], keys, timeout_s=120.0) as client:
        await client.accede()
        if spec["role"] == "sender":
            result = await run_sender(client, spec)
        elif spec["role"] == "receiver":
            print(json.dumps({"event": "ready", "org": keys.org}), flush=True)
            result = await run_receiver(client, spec, deadline)
        else:
            raise ValueError(f"unknown role {spec['role']!r}")
    return {"ok": True, "org": keys.org, "peak_rss_kib": peak_rss_kib(), **result}


if __name__ == "__main__":
    given: dict[str, Any] = json.loads(sys.argv[1])
    try:
        out = asyncio.run(main(given))
    except Exception as exc:
        print(json.dumps({"ok": False, "role": given.get("role"), "error": repr(exc)}), flush=True)
        sys.exit(1)
    print(json.dumps(out, ensure_ascii=False), flush=True)
