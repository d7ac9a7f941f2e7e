"""National-check nodes as OS processes (`python -m gateway serve --config ...`), with
their stdout and stderr in files, for the end-to-end tests."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.hubproc import Processes


class NodeProcess:
    def __init__(self, name: str, config: Path, url: str, log_dir: Path, procs: Processes) -> None:
        self.name = name
        self.config = config
        self.url = url
        self.stdout = log_dir / f"{name}.stdout.log"
        self.stderr = log_dir / f"{name}.stderr.log"
        self._procs = procs
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        self.proc = self._procs.spawn(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.config)],
            stdout=self.stdout,
            stderr=self.stderr,
            append=self.proc is not None,
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready within {timeout_s} s:\n{self.logs()}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM; the exit code, failing if the node is not gone within timeout_s."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5.0)
            raise AssertionError(f"{self.name} still running {timeout_s} s after SIGTERM") from None

    def log_lines(self) -> list[dict[str, object]]:
        return [
            json.loads(line)
            for line in self.stderr.read_text(encoding="utf-8").splitlines()
            if line.startswith("{")
        ]

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in (self.stdout, self.stderr)
            if p.exists()
        )


def free_range(count: int) -> int:
    """A base port P with P..P+count-1 all free (below the kernel's ephemeral range)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 30_000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free port range")
