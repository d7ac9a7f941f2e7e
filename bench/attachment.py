"""Benchmark of a secure case message with a large attachment (issue #8): one partner
process sends a file through a hub process to another partner process.

    .venv/bin/python bench/attachment.py [--size-mb 25] [--dir DIR] [--keep] [--no-adapters]

Sets up a hub folder (init, protocol, two partners: the region's ZVH and Veilig
Thuis) in a temporary folder and runs three OS processes: the hub
(`python -m gateway serve`), the receiver and the sender (this script again, with
`--partner SPEC`, driving the client library). The sender registers a case,
encrypts and uploads the file (PROTOCOL §4.1) and sends the message; the receiver
long-polls, downloads and decrypts the attachment, checks its hash and
acknowledges. Prints a table with the peak resident memory (VmHWM) of each process
(target: each under 100 MB: nobody holds the file whole) and the throughput.

Then, unless `--no-adapters`, it runs bench/adapter_attachment.py with the same size:
the same path between two partner *adapter* processes (what issue 8's acceptance 3
names: the sending adapter, the hub and the receiving adapter).

Not a test: the e2e test tests/e2e/test_attachments.py checks the same path.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import REPO, free_port, wait_ready

from gateway.adapters.client import HubClient
from gateway.clock import SystemClock
from gateway.config import load_settings
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import derive_key_pair, evaluate, pid_input
from gateway.services import admin

HUB = "hub-bench"
SENDER = "zvh-bench"
RECEIVER = "vt-bench"
PROTOCOL = "Privacyprotocol Benchregio, versie 1.\n"
MB = 1024 * 1024
TARGET_MB = 100


# -- the partner processes -----------------------------------------------------------


def peak_rss_kib(pid: int | str = "self") -> int:
    """VmHWM of a process (ru_maxrss would include the parent's size across exec)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc status")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


async def sender(client: HubClient, spec: dict[str, Any]) -> dict[str, Any]:
    await client.register_case("BENCH-1", "huiselijk-geweld", [("S1", spec["pid"])], [RECEIVER])
    started = time.time()
    descriptor = await client.attach(Path(spec["file"]), media_type="application/pdf")
    uploaded = time.time()
    await client.send_message(
        "BENCH-1", [RECEIVER], {"text": "bijlage"}, subject_ref="S1", attachments=[descriptor]
    )
    return {"started": started, "uploaded": uploaded, "sent": time.time()}


async def receiver(client: HubClient, spec: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps({"event": "ready"}), flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        messages = [m for m in await client.fetch(wait=5) if m.kind == "message"]
        if messages:
            break
    else:
        raise TimeoutError("no message arrived")
    (msg,) = messages
    assert msg.body is not None
    (attachment,) = msg.body["attachments"]
    fetch_started = time.time()
    await client.fetch_attachment(attachment, Path(spec["dest"]))
    fetched = time.time()
    await client.ack([msg.message_id])
    intact = file_sha256(Path(spec["dest"])) == attachment["sha256_plain"]
    return {"fetch_started": fetch_started, "fetched": fetched, "intact": intact}


async def partner(spec: dict[str, Any]) -> dict[str, Any]:
    keys = OrgKeys.load(spec["key_file"])
    async with HubClient(spec["url"], keys, timeout_s=300.0) as client:
        await client.accede()
        result = await (sender if spec["role"] == "sender" else receiver)(client, spec)
    return {**result, "peak_rss_kib": peak_rss_kib()}


# -- the orchestration ---------------------------------------------------------------------


def setup(base: Path) -> tuple[Path, str, dict[str, Path]]:
    clock = SystemClock()
    port = free_port()
    paths = admin.init_hub(base / "hub", HUB, clock, port=port)
    settings = load_settings(paths.config)
    admin.publish_protocol(
        settings,
        clock,
        text=PROTOCOL.encode(),
        title="Privacyprotocol",
        themes=["huiselijk-geweld"],
    )
    key_files = {}
    for org, role, domain in ((SENDER, "zvh", "bestuur"), (RECEIVER, "partner", "zorg")):
        keys = OrgKeys.generate(org)
        key_files[org] = base / "keys" / f"{org}.key.json"
        key_files[org].parent.mkdir(exist_ok=True)
        keys.save(key_files[org])
        admin.add_partner(
            settings, clock, public=keys.public(), role=role, domain=domain, name=None
        )
    return paths.config, f"http://127.0.0.1:{port}", key_files


def spawn(spec: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--partner", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        cwd=REPO,
    )


def last_json(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"partner exited {proc.returncode}: {out.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def run(base: Path, size_mb: int) -> dict[str, Any]:
    config, url, key_files = setup(base)
    plain = base / "bijlage.pdf"
    with plain.open("wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(MB))
    oprf_key, _ = derive_key_pair(b"\x07" * 32, b"zvh-gateway bench")
    pid = evaluate(oprf_key, pid_input("230857103", "19800203")).hex()
    hub_log = (base / "hub.log").open("wb")
    hub = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        stdout=hub_log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        wait_ready(hub, url)
        common = {"url": url}
        recv = spawn(
            {
                **common,
                "role": "receiver",
                "key_file": str(key_files[RECEIVER]),
                "dest": str(base / "ontvangen.pdf"),
            },
            base / "receiver.log",
        )
        assert recv.stdout is not None
        ready = recv.stdout.readline()
        if b"ready" not in ready:
            raise RuntimeError(f"receiver not ready: {ready!r}")
        send = spawn(
            {
                **common,
                "role": "sender",
                "key_file": str(key_files[SENDER]),
                "file": str(plain),
                "pid": pid,
            },
            base / "sender.log",
        )
        sent, got = last_json(send), last_json(recv)
        hub_peak = peak_rss_kib(hub.pid)
    finally:
        hub.terminate()
        hub.wait(timeout=15)
        hub_log.close()
    size = plain.stat().st_size
    return {
        "size_mb": size / MB,
        "intact": got["intact"],
        "rss_kib": {
            "sender": sent["peak_rss_kib"],
            "hub": hub_peak,
            "receiver": got["peak_rss_kib"],
        },
        "upload_s": sent["uploaded"] - sent["started"],
        "download_s": got["fetched"] - got["fetch_started"],
        "end_to_end_s": got["fetched"] - sent["started"],
    }


def report(r: dict[str, Any]) -> None:
    mb = r["size_mb"]
    print(f"\nattachment: {mb:.1f} MiB, arrived intact: {r['intact']}\n")
    print(f"{'process':<12}{'peak RSS (MiB)':>16}{'target':>10}")
    for name, kib in r["rss_kib"].items():
        verdict = "ok" if kib < TARGET_MB * 1024 else "OVER"
        print(f"{name:<12}{kib / 1024:>16.1f}{'< ' + str(TARGET_MB):>10}  {verdict}")
    print(f"\n{'step':<34}{'seconds':>10}{'MB/s':>10}")
    for label, key in (
        ("encrypt + upload (sender)", "upload_s"),
        ("download + decrypt (receiver)", "download_s"),
        ("end to end (attach .. decrypted)", "end_to_end_s"),
    ):
        seconds = r[key]
        print(f"{label:<34}{seconds:>10.2f}{mb / seconds if seconds > 0 else 0:>10.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=25)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-adapters", action="store_true", help="client library only")
    parser.add_argument("--partner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.partner:
        print(json.dumps(asyncio.run(partner(json.loads(args.partner)))), flush=True)
        return 0
    base = args.dir or Path(tempfile.mkdtemp(prefix="zvh-bench-attachment-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        result = run(base, args.size_mb)
        report(result)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    ok = result["intact"] and all(k < TARGET_MB * 1024 for k in result["rss_kib"].values())
    if not args.no_adapters:
        print("\nthe same through two adapter processes (bench/adapter_attachment.py):", flush=True)
        adapters = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("adapter_attachment.py")),
             "--size-mb", str(args.size_mb)],
            check=False,
        )  # fmt: skip
        ok = ok and adapters.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
