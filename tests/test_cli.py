"""The admin CLI as an operator scripts it: exit codes, files and their modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.crypto.keys import OrgKeys
from tests.conftest import free_port, free_port_pair


def test_init_hub_writes_config_keys_and_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init-hub", "--dir", str(tmp_path / "h"), "--org", "hub-x"]) == 0
    key_file = tmp_path / "h" / "keys" / "hub-x.key.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "h" / "hub.sqlite3").exists()
    assert OrgKeys.load(key_file).org == "hub-x"
    # Refuses to overwrite an existing hub.
    assert main(["init-hub", "--dir", str(tmp_path / "h"), "--org", "hub-x"]) == 2
    assert "exists already" in capsys.readouterr().err


def test_config_check_prints_redacted_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["init-hub", "--dir", str(tmp_path), "--org", "hub-x"])
    config = tmp_path / "hub.toml"
    config.write_text(
        config.read_text().replace("[hub]\n", '[hub]\nsession_secret = "hunter2-very-secret"\n')
    )
    capsys.readouterr()
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["node"]["org"] == "hub-x"
    assert "hunter2" not in out
    assert data["hub"]["session_secret"] == "**redacted**"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[node]\nrole = 'hub'\n", "node.org"),
        ("not toml [", "not valid TOML"),
        ("[node]\norg = 'Bad Org'\nkey_file='k'\ndatabase='d'\n", "node.org"),
        ("[node]\norg = 'hub-x'\nkey_file='k'\ndatabase='d'\n[http]\nport = 'x'\n", "http.port"),
        ("[node]\norg = 'hub-x'\nkey_file='k'\ndatabase='d'\nbogus = 1\n", "node.bogus"),
    ],
)
def test_config_check_names_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["config", "check", "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_config_check_missing_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("[node]\norg = 'hub-x'\nkey_file = 'nope.json'\ndatabase = 'd.sqlite3'\n")
    assert main(["config", "check", "--config", str(config)]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_keys_and_partner_admin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init-hub", "--dir", str(tmp_path / "h"), "--org", "hub-x"])
    config = str(tmp_path / "h" / "hub.toml")
    assert main(["keys", "generate", "--org", "politie-x", "--out", str(tmp_path / "k")]) == 0
    private = tmp_path / "k" / "politie-x.key.json"
    assert private.stat().st_mode & 0o777 == 0o600
    pub = json.loads((tmp_path / "k" / "politie-x.pub.json").read_text())
    assert "signing_private_key" not in pub
    args = [
        "partner",
        "add",
        "--config",
        config,
        "--org",
        "politie-x",
        # b64u keys may start with "-": the =-form keeps argparse from reading an option.
        f"--signing-key={pub['signing_key']}",
        f"--encryption-key={pub['encryption_key']}",
        "--role",
        "partner",
        "--domain",
        "straf",
        "--name",
        "Politie X",
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["partner", "list", "--config", config, "--json"]) == 0
    listed = {o["org"]: o for o in json.loads(capsys.readouterr().out)}
    assert listed["politie-x"]["role"] == "partner"
    assert listed["politie-x"]["signing_kid"] == pub["signing_kid"]
    assert listed["hub-x"]["role"] == "hub"
    assert main(["partner", "revoke", "--config", config, "--org", "politie-x"]) == 0
    assert main(["partner", "revoke", "--config", config, "--org", "politie-x"]) == 1
    bad = [*args[:6], "--signing-key=not-base64!", *args[7:]]
    assert main(bad) == 2


def test_serve_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    main(["init-hub", "--dir", str(tmp_path), "--org", "hub-x"])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(tmp_path / "hub.toml"),
            "--port",
            str(port),
            "--metrics-port",
            str(mport),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "hub did not become ready"
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=2) as r:
            assert b"zvh_gateway_build_info" in r.read()
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_no_scenario_writes_network_and_stops(tmp_path: Path) -> None:
    base = free_port_pair()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--dir",
            str(tmp_path / "d"),
            "--base-port",
            str(base),
            "--no-scenario",
        ],
        # A file, not a pipe nobody reads: a full pipe would block the demo's event loop.
        stdout=(tmp_path / "demo.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        network_file = tmp_path / "d" / "network.json"
        deadline = time.monotonic() + 40
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{base}/readyz", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "demo.out").read_text()
                time.sleep(0.1)
        network = json.loads(network_file.read_text())
        assert [n["role"] for n in network["nodes"]] == ["hub"]
        roles = {p["org"]: p["role"] for p in network["partners"]}
        assert sorted(roles.values()) == ["incidental", "partner", "partner", "partner", "zvh"]
        for p in network["partners"]:
            assert Path(p["key_file"]).is_absolute()
            keys = OrgKeys.load(p["key_file"])
            assert keys.public().to_json()["signing_key"] == p["signing_key"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_partner_add_from_public_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init-hub", "--dir", str(tmp_path / "h"), "--org", "hub-x"])
    config = str(tmp_path / "h" / "hub.toml")
    main(["keys", "generate", "--org", "ggz-x", "--out", str(tmp_path / "k")])
    pub = str(tmp_path / "k" / "ggz-x.pub.json")
    base = ["partner", "add", "--config", config, "--role", "partner", "--public-file", pub]
    assert main([*base, "--org", "ggz-x"]) == 0
    assert main([*base, "--org", "other-x"]) == 2  # the file names another organisation
    assert "not other-x" in capsys.readouterr().err
    assert main(["partner", "add", "--config", config, "--role", "partner", "--org", "x-y"]) == 2


def test_demo_transcript_shows_the_policy_outcomes(tmp_path: Path) -> None:
    """What `make run` prints: dat, an incidental partner refused and then admitted after
    its declaration, a wat released, one refused by the policy, one by the holder."""
    base = free_port_pair()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--dir",
            str(tmp_path / "d"),
            "--base-port",
            str(base),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines)
    assert "denied woonstichting-demo: declaration-required" in text, text
    assert "now delivered to woonstichting-demo" in text, text
    assert "politie-demo decided release" in text, text
    assert "refused: legal-basis-missing" in text, text
    assert "decided refuse, reason client-objection-upheld" in text, text
    assert "230857103" not in text  # the transcript shows what happened, not the BSN
