"""Helpers for the end-to-end tests: a hub made with the CLI and run as an OS process.

Everything goes through `sys.executable -m gateway ...`, exactly as an operator would
run it; nothing here imports the hub's internals. Processes are tracked so that a
test's teardown can always terminate them, and kill them if they do not go.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 30.0
PROTOCOL_TEXT = "Privacyprotocol E2E-regio, versie 1.\n\nDeelnemers delen alleen wat nodig is.\n"
THEMES = ("huiselijk-geweld", "verward-gedrag", "radicalisering")


def cli(*args: str, timeout: float = CLI_TIMEOUT_S) -> str:
    """Run `python -m gateway ARGS`; fail the test with its output unless it exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, (
        f"zvh-gateway {' '.join(args)} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc.stdout


@dataclass(frozen=True, slots=True)
class HubSetup:
    """A hub directory made by `init-hub`, and the partners' key files made by `keys`."""

    hub_org: str
    hub_dir: Path
    config: Path
    database: Path
    port: int
    key_files: dict[str, Path]
    log_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def database_files(self) -> list[Path]:
        """The SQLite file and its -wal / -shm companions, those that exist."""
        return [
            p
            for p in (
                self.database,
                self.database.with_name(self.database.name + "-wal"),
                self.database.with_name(self.database.name + "-shm"),
            )
            if p.exists()
        ]


def create_hub(base: Path, hub_org: str, partners: Sequence[tuple[str, str, str]]) -> HubSetup:
    """`init-hub` and `protocol publish`, then `keys generate` and `partner add` for each
    (org, role, domain). The members still have to sign their accessions (over HTTP).

    The partners' private keys live outside the hub's folder, as they would at the
    partner organisations.
    """
    port = free_port()
    hub_dir = base / "hub"
    keys_dir = base / "partner-keys"
    log_dir = base / "logs"
    log_dir.mkdir(parents=True)
    cli("init-hub", "--dir", str(hub_dir), "--org", hub_org, "--port", str(port))
    config = hub_dir / "hub.toml"
    protocol = base / "protocol.txt"
    protocol.write_text(PROTOCOL_TEXT, encoding="utf-8")
    publish = ["--config", str(config), "--file", str(protocol), "--themes", *THEMES]
    cli("protocol", "publish", *publish)
    key_files: dict[str, Path] = {}
    for org, role, domain in partners:
        cli("keys", "generate", "--org", org, "--out", str(keys_dir))
        public = json.loads((keys_dir / f"{org}.pub.json").read_text(encoding="utf-8"))
        cli(
            "partner",
            "add",
            "--config",
            str(config),
            "--org",
            org,
            # `--opt=value`: a b64u key may start with "-", which argparse would take for
            # an option if the value came as a separate argument.
            f"--signing-key={public['signing_key']}",
            f"--encryption-key={public['encryption_key']}",
            "--role",
            role,
            "--domain",
            domain,
        )
        key_files[org] = keys_dir / f"{org}.key.json"
        assert key_files[org].stat().st_mode & 0o077 == 0, "private key file is not 0600"
    return HubSetup(
        hub_org=hub_org,
        hub_dir=hub_dir,
        config=config,
        database=hub_dir / "hub.sqlite3",
        port=port,
        key_files=key_files,
        log_dir=log_dir,
    )


@dataclass
class Processes:
    """Every child a test started; `cleanup` terminates, then kills, what still runs."""

    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: list[IO[bytes]] = field(default_factory=list)

    def spawn(
        self, argv: Sequence[str], *, stdout: Path, stderr: Path, append: bool = False
    ) -> subprocess.Popen[bytes]:
        mode = "ab" if append else "wb"
        out = stdout.open(mode)
        err = stderr.open(mode)
        self.log_files += [out, err]
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO
        )
        self.children.append(proc)
        return proc

    def cleanup(self) -> None:
        running = [p for p in self.children if p.poll() is None]
        for p in running:
            p.terminate()
        deadline = time.monotonic() + 5.0
        for p in running:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5.0)
        for f in self.log_files:
            f.close()


@pytest.fixture
def procs() -> Iterator[Processes]:
    """The OS processes a test starts, stopped (and killed if need be) at its end.
    Registered for every test by `pytest_plugins` in tests/conftest.py."""
    p = Processes()
    try:
        yield p
    finally:
        p.cleanup()


class HubProcess:
    """`python -m gateway serve --config ...`; stdout and stderr go to files in log_dir,
    appended across restarts, so that a test can read everything the hub ever logged."""

    def __init__(self, setup: HubSetup, procs: Processes) -> None:
        self.setup = setup
        self._procs = procs
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stdout = setup.log_dir / "hub.stdout.log"
        self.stderr = setup.log_dir / "hub.stderr.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, ready_timeout_s: float = 20.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "hub already running"
        self.proc = self._procs.spawn(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.setup.config)],
            stdout=self.stdout,
            stderr=self.stderr,
            append=self.starts > 0,
        )
        self.starts += 1
        self.wait_ready(ready_timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        """Poll the unsigned /readyz until it answers 200 (or the hub dies, or time runs out)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"hub exited {self.proc.returncode} while starting:\n{self.logs()}"
                )
            try:
                with urllib.request.urlopen(self.setup.url + "/readyz", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"hub not ready within {timeout_s} s:\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10.0)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send `sig`; return the exit code, failing if the hub is not gone within timeout_s."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5.0)
            raise AssertionError(f"hub still running {timeout_s} s after {sig.name}") from None

    def logs(self) -> str:
        parts = []
        for path in (self.stdout, self.stderr):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def iter_files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in sorted(root.rglob("*")) if p.is_file())


# -- partner scripts (partner_proc.py, message_proc.py) run as processes -----------------

Started = tuple[subprocess.Popen[bytes], Path, Path]  # the process, its stdout and stderr


def spawn_script(
    procs: Processes,
    script: Path,
    setup: HubSetup,
    out_dir: Path,
    *,
    org: str,
    spec: dict[str, Any],
    timeout_s: float,
) -> Started:
    """Run a partner script for `org` against the hub; its JSON spec on the command line,
    its output in `out_dir/<org>.stdout|stderr`."""
    full = {"url": setup.url, "key_file": str(setup.key_files[org]), "timeout_s": timeout_s}
    full.update(spec)
    stdout, stderr = out_dir / f"{org}.stdout", out_dir / f"{org}.stderr"
    proc = procs.spawn(
        [sys.executable, str(script), json.dumps(full)], stdout=stdout, stderr=stderr
    )
    return proc, stdout, stderr


def wait_ready(started: Started, timeout_s: float) -> None:
    """Until the script says it has signed its accession (so it can be addressed)."""
    proc, stdout, stderr = started
    deadline = time.monotonic() + timeout_s
    while '"event": "ready"' not in stdout.read_text(encoding="utf-8"):
        if proc.poll() is not None or time.monotonic() > deadline:
            out = stdout.read_text(encoding="utf-8")
            err = stderr.read_text(encoding="utf-8", errors="replace")
            raise AssertionError(f"{stdout.stem} not ready\nstdout:\n{out}\nstderr:\n{err[-4000:]}")
        time.sleep(0.05)


def result_of(started: Started, timeout_s: float) -> dict[str, Any]:
    """The script's last line, a JSON object with `ok: true`."""
    proc, stdout, stderr = started
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"partner process {stdout.stem} still running") from None
    out = stdout.read_text(encoding="utf-8")
    err = stderr.read_text(encoding="utf-8", errors="replace")
    assert rc == 0, f"{stdout.stem} exited {rc}\nstdout:\n{out}\nstderr:\n{err[-4000:]}"
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, f"{stdout.stem} printed nothing\nstderr:\n{err[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert result["ok"] is True, result
    return result
