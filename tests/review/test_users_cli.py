"""`zvh-gateway users add`: the password comes from stdin, is stored as argon2id,
and the addition is a ledger entry without it."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.clock import SystemClock
from gateway.services import admin

SECRET = "Een-lang-genoeg-wachtwoord"


def hub_config(tmp_path: Path) -> Path:
    return admin.init_hub(tmp_path / "hub", "hub-cli", SystemClock(), port=18999).config


def test_users_add_reads_the_password_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = hub_config(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    argv = ["users", "add", "--config", str(config), "--name", "fg-bram", "--role", "admin"]
    assert main(argv) == 0
    assert "added user fg-bram" in capsys.readouterr().out
    conn = sqlite3.connect(tmp_path / "hub" / "hub.sqlite3")
    try:
        role, hashed = conn.execute(
            "SELECT role, password_hash FROM users WHERE name = 'fg-bram'"
        ).fetchone()
        bodies = [
            bytes(b).decode()
            for (b,) in conn.execute("SELECT body FROM ledger WHERE type = 'review-user-added'")
        ]
    finally:
        conn.close()
    assert role == "admin"
    assert hashed.startswith("$argon2id$")
    assert SECRET not in hashed
    assert len(bodies) == 1
    assert "fg-bram" in bodies[0]
    assert SECRET not in bodies[0]


def test_users_add_refuses_a_short_password_and_a_bad_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = hub_config(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("kort\n"))
    argv = ["users", "add", "--config", str(config), "--name", "fg-bram", "--role", "admin"]
    assert main(argv) == 2
    with pytest.raises(SystemExit):
        main(["users", "add", "--config", str(config), "--name", "x1", "--role", "partner"])
