"""`zvh-gateway demo --national` as an operator runs it: one process, N hubs, the
pseudonymiser (with the RFC 9497 key when asked) and the index, network.json per
PROTOCOL §8, the scenario, and exit 0 within 10 s of SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.client import HubClient, HubError
from gateway.crypto.encoding import b64u_decode, b64u_encode
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import blind
from tests.crypto.test_oprf import RFC_BLIND, RFC_VECTORS
from tests.e2e.hubproc import REPO
from tests.federation.conftest import RFC_INFO, RFC_SEED_HEX
from tests.federation.nodeproc import free_range

pytestmark = pytest.mark.e2e


def start_demo(tmp_path: Path, base: int, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "demo.out"
    with out.open("wb") as handle:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "demo",
                "--national",
                "--dir",
                str(tmp_path / "d"),
                "--base-port",
                str(base),
                *extra,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    return proc, out


def wait_for(proc: subprocess.Popen[bytes], out: Path, text: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = out.read_text(errors="replace")
        if text in seen:
            return seen
        assert proc.poll() is None, f"demo exited {proc.returncode}:\n{seen}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not printed in time:\n{out.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=10) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert time.monotonic() - started < 10


def test_national_demo_plays_and_serves_the_rfc_key(tmp_path: Path) -> None:
    base = free_range(100)
    proc, out = start_demo(
        tmp_path, base, "--hubs", "3", "--oprf-seed", RFC_SEED_HEX, "--oprf-info", RFC_INFO
    )
    try:
        text = wait_for(proc, out, "The nodes keep serving")
        assert "known at hub-rotterdam (open since" in text
        assert "Zorg- en Veiligheidshuis Rotterdam-Rijnmond" in text
        assert "403 forbidden-role" in text
        network = json.loads((tmp_path / "d" / "network.json").read_text())
        roles = sorted(n["role"] for n in network["nodes"])
        assert roles == ["hub", "hub", "hub", "index", "pseudonymiser"]
        ports = [int(n["url"].rsplit(":", 1)[1]) for n in network["nodes"]]
        assert all(base <= p < base + 100 for p in ports)
        assert len(network["partners"]) == 9
        for p in network["partners"]:
            assert Path(p["key_file"]).is_absolute()
            assert OrgKeys.load(p["key_file"]).org == p["org"]
        by_hub = {p["hub"] for p in network["partners"]}
        assert by_hub == {n["org"] for n in network["nodes"] if n["role"] == "hub"}
        # The RFC 9497 A.1.1 key, reached through a hub of the running demo.
        partner = next(p for p in network["partners"] if p["hub"] == "hub-haaglanden")
        url = next(n["url"] for n in network["nodes"] if n["org"] == "hub-haaglanden")

        async def evaluate() -> list[str]:
            async with HubClient(url, OrgKeys.load(partner["key_file"])) as client:
                element = blind(bytes.fromhex(RFC_VECTORS[0][0]), RFC_BLIND)[1]
                res = await client.call(
                    "POST", "/api/v1/pseudonyms/evaluate", body={"blinded": [b64u_encode(element)]}
                )
                return [b64u_decode(e).hex() for e in res["evaluated"]]

        assert asyncio.run(evaluate()) == [RFC_VECTORS[0][2]]
    finally:
        stop(proc)
    assert "demo stopped" in out.read_text()


def test_national_demo_without_scenario_signs_nothing(tmp_path: Path) -> None:
    base = free_range(100)
    proc, out = start_demo(tmp_path, base, "--hubs", "1", "--no-scenario")
    try:
        wait_for(proc, out, "The nodes keep serving")
        network = json.loads((tmp_path / "d" / "network.json").read_text())
        partner = network["partners"][0]
        url = network["nodes"][-1]["url"]

        async def check() -> Any:
            async with HubClient(url, OrgKeys.load(partner["key_file"])) as client:
                with pytest.raises(HubError) as err:
                    await client.pseudonym("230857103", "19800203")
                return err.value.code

        assert asyncio.run(check()) == "not-a-member"
    finally:
        stop(proc)
