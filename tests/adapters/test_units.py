"""Unit tests of the adapter's parts: backoff, the token file, the configuration,
and the file drop's parsing (CSV and JSON errors name rows and columns, never values)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.adapters.adapter_config import ensure_token, load_adapter_settings
from gateway.adapters.delivery import backoff_s, write_atomically
from gateway.adapters.filedrop import DropError, parse_csv, parse_file, parse_json, ready_files
from gateway.adapters.local_models import AnswerRequest, DatRequest
from gateway.crypto.keys import OrgKeys
from gateway.errors import ConfigError
from tests.conftest import BSN

XID = "0b6f1b0e-8a51-4d1e-9f5e-3c1f4f6f7a10"


# -- backoff ---------------------------------------------------------------------------


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 8, 20])
def test_backoff_is_full_jitter_below_the_capped_exponential(failures: int) -> None:
    rng = random.Random(failures)
    base, cap = 0.5, 30.0
    ceiling = min(cap, base * 2 ** (failures - 1))
    waits = [backoff_s(failures, base, cap, rng) for _ in range(2000)]
    assert all(0.0 <= w <= ceiling for w in waits)
    # Full jitter spreads over the whole range, not around the ceiling.
    assert min(waits) < ceiling * 0.05
    assert max(waits) > ceiling * 0.95
    assert abs(sum(waits) / len(waits) - ceiling / 2) < ceiling * 0.05


def test_backoff_never_passes_the_cap() -> None:
    rng = random.Random(7)
    assert max(backoff_s(60, 1.0, 4.0, rng) for _ in range(1000)) <= 4.0


# -- token file -------------------------------------------------------------------------


def test_token_file_is_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "token"
    old = os.umask(0)
    try:
        token = ensure_token(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 32
    assert ensure_token(path) == token  # read back, not replaced


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_token_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "token"
    path.write_text("x" * 40)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=r"local\.token_file: .* group or others"):
        ensure_token(path)


def test_short_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"local\.token_file"):
        ensure_token(path)


# -- configuration ---------------------------------------------------------------------

GOOD = """
[adapter]
org = "politie-unit"
key_file = "keys/k.json"
hub_url = "http://127.0.0.1:8080"
data_dir = "data"
[local]
token_file = "token"
[webhook]
url = "http://127.0.0.1:9000/zvh"
"""


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "adapter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_resolves_paths_and_defaults(tmp_path: Path) -> None:
    s = load_adapter_settings(_config(tmp_path, GOOD))
    assert s.adapter.key_file == (tmp_path / "keys" / "k.json").resolve()
    assert s.database == (tmp_path / "data" / "adapter.sqlite3").resolve()
    assert s.local.host == "127.0.0.1"
    assert s.target == "webhook"
    assert (s.delivery.max_attempts, s.delivery.backoff_base_s) == (8, 1.0)


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (('url = "http://127.0.0.1:9000/zvh"', 'url = "ftp://x"'), "webhook.url"),
        (('org = "politie-unit"', 'org = "Politie Unit"'), "adapter.org"),
        (("[local]", "[local]\nport = 70000"), "local.port"),
        (("[local]", "[local]\nbogus = 1"), "local.bogus"),
        (("[webhook]", "[delivery]\nmax_attempts = 0\n[webhook]"), "delivery.max_attempts"),
        (('token_file = "token"', ""), "local.token_file"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, change: tuple[str, str], names: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ConfigError) as err:
        load_adapter_settings(_config(tmp_path, text))
    assert names in str(err.value)


def test_config_needs_a_place_for_incoming_items(tmp_path: Path) -> None:
    text = GOOD.split("[webhook]", maxsplit=1)[0]
    with pytest.raises(ConfigError, match=r"\[webhook\] url or \[filedrop\] dir"):
        load_adapter_settings(_config(tmp_path, text))
    with_drop = text + '[filedrop]\ndir = "drop"\n'
    assert load_adapter_settings(_config(tmp_path, with_drop)).target == "filedrop"


# -- the file drop: parsing -------------------------------------------------------------


def test_csv_rows_become_requests() -> None:
    data = (
        "type,case_ref,subject_ref,recipients,body.bsn,body.naam.achternaam\n"
        f"dat-request,ZVH-1,S1,politie-a; ggz-b ,{BSN},Testmans\n"
        f"answer,,,,,\n"
    ).encode()
    with pytest.raises(DropError, match=r"line 3: .*exchange_id"):
        parse_csv(data)
    header = (
        b"type,case_ref,subject_ref,recipients,body.bsn,body.naam.achternaam,exchange_id,decision"
    )
    rows = (
        f"dat-request,ZVH-1,S1,politie-a; ggz-b ,{BSN},Testmans,,\nanswer,,,,,,{XID},known\n"
    ).encode()
    parsed = parse_csv(header + b"\n" + rows)
    assert [p.operation for p in parsed] == ["dat-requests", "answers"]
    dat = parsed[0].request
    assert isinstance(dat, DatRequest)
    assert dat.recipients == ["politie-a", "ggz-b"]
    assert dat.body == {"bsn": BSN, "naam": {"achternaam": "Testmans"}}
    answer = parsed[1].request
    assert isinstance(answer, AnswerRequest)
    assert (answer.exchange_id, answer.decision, answer.body) == (XID, "known", None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"case_ref,subject_ref\nZ,S\n", "line 1: the header has no column 'type'"),
        (b"type,type\nanswer,answer\n", "line 1: column type appears twice"),
        (b"type,decision\n", "only a header"),
        (b"type,decision\nanswer,known,extra\n", "line 2: 3 cells, the header has 2"),
        (b"type,decision\nfax,known\n", "line 2: type must be one of"),
        (b"type,exchange_id,decision\nanswer,not-a-uuid,known\n", "line 2: exchange_id"),
        (b"type,exchange_id,decision\nanswer," + XID.encode() + b",maybe\n", "line 2: decision"),
        (b"type,body.a,body.a.b\ndat-request,1,2\n", "line 2: column body.a.b: clashes"),
        (b"type\n\xff\xfe\n", "not valid UTF-8"),
        (b'type,body.x\nanswer,"unterminated\n', "not valid CSV"),
    ],
)
def test_csv_errors_name_line_and_column(data: bytes, message: str) -> None:
    with pytest.raises(DropError) as err:
        parse_csv(data)
    assert message in str(err.value)


def test_parse_errors_never_repeat_values() -> None:
    secret = "999999990"  # what a file might hold; must not reach a reason file or a log
    data = f"type,case_ref,subject_ref,recipients,body.bsn\ndat-request,{secret} x,S1,a,1\n"
    with pytest.raises(DropError) as err:
        parse_csv(data.encode())
    assert "case_ref" in str(err.value)
    assert secret not in str(err.value)
    with pytest.raises(DropError) as err2:
        parse_json(f'{{"type": "answer", "exchange_id": "{secret}", "decision": "x"}}'.encode())
    assert secret not in str(err2.value)


def test_json_files_hold_one_request_or_a_list() -> None:
    one = f'{{"type": "answer", "exchange_id": "{XID}", "decision": "not-known"}}'.encode()
    assert len(parse_file("a.json", one)) == 1
    assert len(parse_file("a.json", b"[" + one + b"," + one + b"]")) == 2
    with pytest.raises(DropError, match="no request"):
        parse_json(b"[]")
    with pytest.raises(DropError, match="request 2: must be a JSON object"):
        parse_json(b"[" + one + b", 3]")
    with pytest.raises(DropError, match="not valid UTF-8 JSON"):
        parse_json(b"{nope")


def test_only_finished_files_are_picked_up(tmp_path: Path) -> None:
    for name in ("a.json", "b.CSV", ".c.json", "d.json.part", "e.txt", ".f.json.tmp"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub.json").mkdir()
    assert [p.name for p in ready_files(tmp_path)] == ["a.json", "b.CSV"]
    assert ready_files(tmp_path / "missing") == []


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = write_atomically(tmp_path / "out", "x.json", b"{}")
    assert path.read_bytes() == b"{}"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.json"]
    assert path.stat().st_mode & 0o777 == 0o600


# -- the commands: refusals --------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_init_adapter_and_start_refuse_readable_secrets(tmp_path: Path) -> None:
    key_file = tmp_path / "politie-unit.key.json"
    OrgKeys.generate("politie-unit").save(key_file)
    base = [
        "init-adapter",
        "--org",
        "politie-unit",
        "--hub-url",
        "http://127.0.0.1:9",
        "--key-file",
        str(key_file),
        "--filedrop-dir",
        "drop",
    ]
    key_file.chmod(0o640)
    refused = _run(*base, "--dir", str(tmp_path / "a"))
    assert refused.returncode == 2
    assert "group or others" in refused.stderr
    key_file.chmod(0o600)
    made = _run(*base, "--dir", str(tmp_path / "a"))
    assert made.returncode == 0, made.stderr
    token = tmp_path / "a" / "local-api.token"
    assert token.stat().st_mode & 0o777 == 0o600
    token.chmod(0o644)
    started = _run("adapter", "--config", str(tmp_path / "a" / "adapter.toml"))
    assert started.returncode == 2
    assert "local.token_file" in started.stderr
    assert token.read_text().strip() not in started.stderr + started.stdout
    # No dead letters before the adapter ever ran: a clear message, exit 1.
    listed = _run(
        "adapter", "dead-letters", "list", "--config", str(tmp_path / "a" / "adapter.toml")
    )
    assert listed.returncode == 1
    assert "no adapter database" in listed.stderr
