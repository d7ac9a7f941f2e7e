"""What the benchmarks share: the CLI as an operator runs it, free loopback ports, and
starting and stopping node processes. Imported by the bench scripts (run as
`.venv/bin/python bench/<name>.py`, so this folder is on their path)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout_s: float = 60.0) -> str:
    """`python -m gateway ARGS`; exits with its error output unless it succeeds."""
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"zvh-gateway {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float = 30.0) -> None:
    """Until `url`/readyz answers 200; exits if the process dies or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the node exited {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"the node was not ready within {timeout_s} s")


def stop_process(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout_s: float) -> int:
    """Send `sig`, wait; terminate and kill if it does not go. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                return proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait(timeout=5)
    return proc.returncode


def add_partner(config: Path, keys_dir: Path, org: str, role: str, domain: str) -> Path:
    """`keys generate` and `partner add`, as an operator registers a partner; returns
    the partner's key file."""
    cli("keys", "generate", "--org", org, "--out", str(keys_dir))
    public = json.loads((keys_dir / f"{org}.pub.json").read_text(encoding="utf-8"))
    cli(
        "partner",
        "add",
        "--config",
        str(config),
        "--org",
        org,
        # `=`: a b64u key may begin with "-", which argparse would take for an option.
        f"--signing-key={public['signing_key']}",
        f"--encryption-key={public['encryption_key']}",
        "--role",
        role,
        "--domain",
        domain,
    )
    return keys_dir / f"{org}.key.json"
