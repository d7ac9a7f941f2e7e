"""Benchmark of a case message with a large attachment between two partner *adapters*
(issue 8, acceptance 3 for the adapter path):

    .venv/bin/python bench/adapter_attachment.py [--size-mb 25] [--dir DIR] [--keep]

Everything is made with the CLI and runs as OS processes: a hub
(`python -m gateway serve`), the sending adapter (the ZVH) and the receiving adapter
(Veilig Thuis, with a file drop). The bench plays the ZVH's case system: it puts the
file in the sender's attachment folder and sends one message through the local API;
the receiving adapter decrypts the attachment into its file drop's out/ and writes the
item. Prints the peak resident memory (VmHWM) of the three processes (target: each
under 100 MB: nobody holds the file whole) and the end-to-end throughput.

The hub-and-client-library variant is bench/attachment.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from procs import REPO, add_partner, cli, free_port

HUB, SENDER, RECEIVER = "hub-bench-ad", "zvh-bench-ad", "vt-bench-ad"
MB = 1024 * 1024
TARGET_MB = 100
PID = "ab" * 64  # a synthetic pid: the bench registers a case, it computes no pid


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise SystemExit(f"{url} not ready")


def local(adapter: dict[str, Any], path: str, body: Any, key: str) -> dict[str, Any]:
    request = urllib.request.Request(
        adapter["url"] + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {adapter['token']}",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=300) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def setup(base: Path) -> tuple[Path, int, dict[str, dict[str, Any]]]:
    port = free_port()
    cli("init-hub", "--dir", str(base / "hub"), "--org", HUB, "--port", str(port))
    config = base / "hub" / "hub.toml"
    text = base / "protocol.txt"
    text.write_text("Privacyprotocol Benchregio, versie 1.\n", encoding="utf-8")
    cli(
        "protocol",
        "publish",
        "--config",
        str(config),
        "--file",
        str(text),
        "--themes",
        "huiselijk-geweld",
    )
    adapters: dict[str, dict[str, Any]] = {}
    for org, role, domain in ((SENDER, "zvh", "bestuur"), (RECEIVER, "partner", "zorg")):
        add_partner(config, base / "keys", org, role, domain)
        folder = base / f"adapter-{org}"
        aport = free_port()
        cli(
            "init-adapter",
            "--dir",
            str(folder),
            "--org",
            org,
            "--hub-url",
            f"http://127.0.0.1:{port}",
            "--key-file",
            str(base / "keys" / f"{org}.key.json"),
            "--port",
            str(aport),
            "--filedrop-dir",
            "filedrop",
        )
        adapters[org] = {
            "dir": folder,
            "config": folder / "adapter.toml",
            "url": f"http://127.0.0.1:{aport}",
            "token": (folder / "local-api.token").read_text(encoding="utf-8").strip(),
        }
    return config, port, adapters


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, MB))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


def run(base: Path, size_mb: float) -> int:
    config, port, adapters = setup(base)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        out = (base / "hub.log").open("wb")
        logs.append(out)
        procs["hub"] = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
            stdout=out,
            stderr=out,
            cwd=REPO,
        )
        wait_http(f"http://127.0.0.1:{port}/readyz", procs["hub"])
        for name, org in (("sending adapter", SENDER), ("receiving adapter", RECEIVER)):
            log = (adapters[org]["dir"] / "adapter.log").open("wb")
            logs.append(log)
            procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway",
                    "adapter",
                    "--config",
                    str(adapters[org]["config"]),
                ],
                stdout=log,
                stderr=log,
                cwd=REPO,
            )
            wait_http(adapters[org]["url"] + "/healthz", procs[name])
        sender, receiver = adapters[SENDER], adapters[RECEIVER]
        for org in (SENDER, RECEIVER):
            local(adapters[org], "/local/v1/accessions", {}, f"accede-{org}")
        local(
            sender,
            "/local/v1/cases",
            {
                "case_ref": "ZVH-BENCH-1",
                "theme": "huiselijk-geweld",
                "subjects": [{"subject_ref": "S1", "pid": PID}],
                "participants": [RECEIVER],
            },
            "case-1",
        )
        size = int(size_mb * MB)
        outgoing = sender["dir"] / "outgoing"
        outgoing.mkdir(exist_ok=True)
        digest = write_random(outgoing / "dossier.bin", size)
        start = time.monotonic()
        sent = local(
            sender,
            "/local/v1/messages",
            {
                "case_ref": "ZVH-BENCH-1",
                "recipients": [RECEIVER],
                "body": {"tekst": "dossier"},
                "attachments": [
                    {
                        "path": "dossier.bin",
                        "media_type": "application/octet-stream",
                        "filename": "dossier.bin",
                    }
                ],
            },
            "message-1",
        )
        sent_s = time.monotonic() - start
        out_dir = receiver["dir"] / "filedrop" / "out"
        deadline = time.monotonic() + 600
        items: list[Path] = []
        while not items and time.monotonic() < deadline:
            items = list(out_dir.glob("*-message.json"))
            time.sleep(0.02)
        total_s = time.monotonic() - start
        if not items:
            raise SystemExit("the message did not arrive")
        item = json.loads(items[0].read_text(encoding="utf-8"))
        received = Path(item["body"]["attachments"][0]["path"])
        intact = file_sha256(received) == digest and item["exchange_id"] == sent["exchange_id"]
        peaks = {name: peak_rss_kib(p.pid) / 1024 for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()
    print(
        f"attachment {size_mb:g} MB through two adapters and a hub: "
        f"{'intact (sha256 checked)' if intact else 'CORRUPTED'}"
    )
    print(f"  sent (encrypt + upload + message) {sent_s:6.2f} s   {size / MB / sent_s:7.1f} MB/s")
    print(
        f"  end to end (to the receiver's file) {total_s:6.2f} s   {size / MB / total_s:7.1f} MB/s"
    )
    print(f"  {'process':20} {'peak RSS (VmHWM)':>18}   target < {TARGET_MB} MB")
    for name, mib in peaks.items():
        print(f"  {name:20} {mib:15.1f} MB   {'ok' if mib < TARGET_MB else 'OVER'}")
    return 0 if intact and all(v < TARGET_MB for v in peaks.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=float, default=25.0)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the folder afterwards")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="zvh-bench-adapter-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        return run(base, args.size_mb)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
