"""Configuration of the three roles and the national CLI: `keys generate-oprf`,
`init-node`, `partner add --role hub`, `config check`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_settings
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf_key import OprfKey
from gateway.errors import ConfigError
from gateway.policy.ratelimit import RateLimiter
from tests.crypto.test_oprf import RFC_SKSM

HUB_NODE = "[node]\norg = 'hub-x'\nkey_file = 'k.json'\ndatabase = 'd.sqlite3'\n"
NATIONAL = (
    "[national]\npseudonymiser_url = 'http://127.0.0.1:9000'\n"
    "index_url = 'https://index.example.nl'\n"
)


def test_generate_oprf_reproduces_the_rfc_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "oprf.key.json"
    args = ["keys", "generate-oprf", "--out", str(out), "--seed", "a3" * 32, "--info", "test key"]
    assert main(args) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    key = OprfKey.load(out)
    assert key._private == RFC_SKSM
    printed = capsys.readouterr().out
    assert key.key_id in printed
    assert RFC_SKSM.hex() not in printed
    assert RFC_SKSM.hex() not in repr(key)
    # Never overwritten; random keys differ; --info needs --seed; a bad seed is refused.
    assert main(args) == 2
    assert main(["keys", "generate-oprf", "--out", str(tmp_path / "r1.json")]) == 0
    assert main(["keys", "generate-oprf", "--out", str(tmp_path / "r2.json")]) == 0
    assert OprfKey.load(tmp_path / "r1.json") != OprfKey.load(tmp_path / "r2.json")
    assert main(["keys", "generate-oprf", "--out", str(tmp_path / "x"), "--info", "i"]) == 2
    assert main(["keys", "generate-oprf", "--out", str(tmp_path / "y"), "--seed", "a3"]) == 2


def test_oprf_key_file_is_checked(tmp_path: Path) -> None:
    out = tmp_path / "oprf.key.json"
    OprfKey.generate(bytes(range(32)), b"x").save(out)
    os.chmod(out, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        OprfKey.load(out)
    os.chmod(out, 0o600)
    data = json.loads(out.read_text())
    data["public_key"] = json.loads(out.read_text())["public_key"][::-1]
    out.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="do not match"):
        OprfKey.load(out)


def test_init_node_and_its_trust_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = ["--oprf-seed", "a3" * 32, "--oprf-info", "test key"]
    ps = tmp_path / "ps"
    assert (
        main(["init-node", "--role", "pseudonymiser", "--dir", str(ps), "--org", "ps-x", *seed])
        == 0
    )
    config = ps / "pseudonymiser.toml"
    settings = load_settings(config)
    assert settings.node.role == "pseudonymiser"
    assert settings.pseudonymiser is not None
    assert OprfKey.load(settings.pseudonymiser.oprf_key_file)._private == RFC_SKSM
    assert main(["config", "check", "--config", str(config)]) == 0
    assert '"role": "pseudonymiser"' in capsys.readouterr().out
    os.chmod(settings.pseudonymiser.oprf_key_file, 0o640)
    assert main(["config", "check", "--config", str(config)]) == 2
    assert "readable by others" in capsys.readouterr().err
    os.chmod(settings.pseudonymiser.oprf_key_file, 0o600)
    assert (
        main(["init-node", "--role", "index", "--dir", str(tmp_path / "ix"), "--org", "ix-x"]) == 0
    )
    assert load_settings(tmp_path / "ix" / "index.toml").node.role == "index"
    assert (
        main(["init-node", "--role", "index", "--dir", str(tmp_path / "ix"), "--org", "ix-x"]) == 2
    )
    bad = ["init-node", "--role", "index", "--dir", str(tmp_path / "iy"), "--org", "iy", *seed]
    assert main(bad) == 2
    # Its trust list holds hubs only, added with `partner add --role hub`.
    hub = OrgKeys.generate("hub-x")
    (tmp_path / "hub-x.pub.json").write_text(json.dumps(hub.public().to_json()))
    add = ["partner", "add", "--config", str(config), "--org", "hub-x"]
    pub = ["--public-file", str(tmp_path / "hub-x.pub.json")]
    assert main([*add, *pub, "--role", "partner"]) == 2
    assert "role hub only" in capsys.readouterr().err
    assert main([*add, *pub, "--role", "hub"]) == 0
    assert main([*add, *pub, "--role", "hub"]) == 0  # a key rotation is the same command
    capsys.readouterr()
    assert main(["partner", "list", "--config", str(config), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(o["org"], o["role"]) for o in listed] == [("hub-x", "hub")]
    # A hub still refuses to register another hub as its partner.
    main(["init-hub", "--dir", str(tmp_path / "h"), "--org", "hub-y"])
    hub_add = ["partner", "add", "--config", str(tmp_path / "h" / "hub.toml"), "--org", "hub-x"]
    assert main([*hub_add, *pub, "--role", "hub"]) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HUB_NODE + "[pseudonymiser]\noprf_key_file = 'o.json'\n", "only for role 'pseudonymiser'"),
        (HUB_NODE + "[index]\n", "only for role 'index'"),
        (
            "[node]\nrole = 'pseudonymiser'\norg = 'ps-x'\nkey_file = 'k'\ndatabase = 'd'\n",
            "needs a",
        ),
        (
            "[node]\nrole = 'index'\norg = 'ix-x'\nkey_file = 'k'\ndatabase = 'd'\n" + NATIONAL,
            "only for role 'hub'",
        ),
        (HUB_NODE + NATIONAL.replace("9000'", "9000/api'"), "without a path"),
        (HUB_NODE + NATIONAL + "canary_input = '999990019|19700101'\n", "go together"),
        (
            HUB_NODE + NATIONAL + "lease_days = 1\nrenew_interval_s = 86400\n",
            "shorter than the lease",
        ),
        (
            HUB_NODE
            + NATIONAL
            + "[[national.hubs]]\norg = 'a-b'\ncontact = 'x'\n"
            + "[[national.hubs]]\norg = 'a-b'\ncontact = 'y'\n",
            "twice",
        ),
        (HUB_NODE + NATIONAL + "timeout_s = 0\n", "timeout_s"),
    ],
)
def test_config_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "node.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(config)


def test_hub_config_with_national_section(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        HUB_NODE + NATIONAL + "canary_input = '999990019|19700101'\n"
        f"canary_pid = '{'ab' * 64}'\n[[national.hubs]]\norg = 'hub-x'\ncontact = '010-1234'\n"
    )
    settings = load_settings(config)
    assert settings.national is not None
    assert settings.national.index_url == "https://index.example.nl"
    assert (settings.national.lease_days, settings.national.timeout_s) == (30.0, 2.0)
    assert settings.national.known_check_orgs is None  # the region's zvh organisations
    plain = tmp_path / "plain.toml"
    plain.write_text(HUB_NODE)
    assert load_settings(plain).national is None


def test_rate_limiter_is_a_token_bucket() -> None:
    limiter = RateLimiter(60)  # one a second, bursts of 60
    assert all(limiter.take("a", 0.0) == 0 for _ in range(60))
    assert limiter.take("a", 0.0) == 1
    assert limiter.take("b", 0.0) == 0  # per organisation
    assert limiter.take("a", 1.0) == 0
    assert limiter.take("a", 1.0, cost=5) == 5
    assert limiter.take("a", 0.5) >= 1  # a clock that goes back refills nothing
    assert limiter.take("a", 100.0, cost=61) == 60  # never fits: refused, not queued
