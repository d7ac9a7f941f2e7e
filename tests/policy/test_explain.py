"""Acceptance of `zvh-gateway policy explain`: for every wat-request row of the table, the
explanation given before the request is sent is the hub's answer to it (status, code,
and the policy rule). Also `zvh-gateway policy check` on good and broken files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import gateway.policy
from gateway.cli import main
from gateway.clock import SystemClock
from gateway.policy.rules import default_policy_text
from gateway.services import admin
from tests.conftest import Network
from tests.policy.support import World, world
from tests.policy.table import WAT_ROWS, WatRow
from tests.web.helpers import ledger_size, read_leaf

# Rows also run through the command line (the rest go through admin.explain only).
CLI_ROWS = frozenset(
    {
        "allow/wat-delivered",
        "allow/zsm-advies-waives-dat-required",
        "dat-required/no-dat",
        "legal-basis-missing/art6-the-category-does-not-admit",
        "category-not-allowed/not-for-the-requesters-domain",
        "not-a-participant/wat-holder",
        "case-closed/wat",
    }
)


def _params() -> list[Any]:
    params = []
    for row in WAT_ROWS:
        bug = row.bug or row.explain_bug
        marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
        params.append(pytest.param(row, id=row.name, marks=marks))
    return params


def _config(tmp_path: Path) -> Path:
    """The hub.toml the `network` fixtures write (tests/conftest.py: make_hub_dir)."""
    path = tmp_path / "hub" / "hub.toml"
    assert path.is_file()
    return path


def _cli_explain(
    config: Path, request: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["policy", "explain", "--config", str(config), "--request", json.dumps(request)])
    out = capsys.readouterr().out
    result = json.loads(out)
    assert isinstance(result, dict), out
    return code, result


async def _hub_rule(w: World, problem: dict[str, Any]) -> str | None:
    """The rule the hub recorded in the ledger for a denial (None for the party checks)."""
    [ref] = problem["ledger"]
    leaf = await read_leaf(w.db, int(ref["index"]))
    assert leaf.body is not None
    rule = leaf.body.get("rule")
    return None if rule is None else str(rule)


@pytest.mark.parametrize("row", _params())
async def test_explain_gives_the_hubs_decision(
    bare_network: Network, tmp_path: Path, row: WatRow, capsys: pytest.CaptureFixture[str]
) -> None:
    async with world(bare_network, row.members) as w:
        await row.prepare(w)
        request = row.spec.explain_request()
        size = await ledger_size(w.db)
        explained = admin.explain(w.net.settings, SystemClock(), request)
        if row.name in CLI_ROWS:
            exit_code, printed = _cli_explain(_config(tmp_path), request, capsys)
            assert printed == explained
            assert exit_code == (0 if explained["decision"] == "allow" else 1)
        assert await ledger_size(w.db) == size, "explain must not record anything"

        sent_ms = SystemClock().now_ms()
        reply = await w.wat(row.spec)

        assert explained["status"] == reply.status, (explained, reply.text)
        assert explained["status"] == row.want.status
        body = reply.body()
        if reply.status < 400:
            assert explained["decision"] == "allow"
            assert explained["code"] is None
            assert explained["rule"] == body["rule"]
            accepted_ms = body["deadline_ms"] - explained["deadline_hours"] * 3_600_000
            assert sent_ms <= accepted_ms <= SystemClock().now_ms()
            return
        assert explained["decision"] == ("deny" if reply.status == 403 else "error")
        assert explained["code"] == body["code"] == row.want.code
        if reply.status == 403:
            hub_rule = await _hub_rule(w, body)
            if hub_rule is not None:  # a policy decision: the very rule the hub applied
                assert explained["rule"] == hub_rule == row.want.rule


async def test_explain_reads_the_request_from_a_file(
    network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--request @FILE`, and an unknown requester is explained as the hub's 401."""
    file = tmp_path / "request.json"
    file.write_text(
        json.dumps({"requester": "outsider", "case_ref": "C-1", "holder": "vt-test"}),
        encoding="utf-8",
    )
    capsys.readouterr()
    code = main(["policy", "explain", "--config", str(_config(tmp_path)), "--request", f"@{file}"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (result["status"], result["code"]) == (401, "unauthenticated")


def test_explain_refuses_a_request_that_is_not_json(
    network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["policy", "explain", "--config", str(_config(tmp_path)), "--request", "{nee"])
    assert code == 2
    assert "--request is not JSON" in capsys.readouterr().err


# -- policy check ----------------------------------------------------------------------------


def test_policy_check_accepts_the_default_policy(capsys: pytest.CaptureFixture[str]) -> None:
    shipped = Path(gateway.policy.__file__).parent / "default_policy.toml"
    assert shipped.read_text(encoding="utf-8") == default_policy_text()
    assert main(["policy", "check", str(shipped)]) == 0
    assert capsys.readouterr().out.startswith("policy OK: 6 themes, 7 categories")


BROKEN = {
    "special-without-exception": (
        ('gdpr_special = ["art10"]\n', ""),
        "categories.justitiele-gegevens",
    ),
    "unknown-category-in-a-theme": (
        ('sociaal = ["contact", "betrokkenheid", "woon-situatie"]', 'sociaal = ["schulden"]'),
        "themes.huiselijk-geweld.requesters.sociaal",
    ),
    "unknown-key": (
        ("deadline_hours = 72\n", "deadline_hours = 72\ndeadline_days = 3\n"),
        "themes.huiselijk-geweld.deadline_days",
    ),
    "empty": ((None, ""), "empty"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_policy_check_refuses_a_broken_file_naming_the_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    (old, new), named = BROKEN[case]
    text = default_policy_text()
    if old is None:
        text = new
    else:
        assert old in text
        text = text.replace(old, new, 1)
    file = tmp_path / "policy.toml"
    file.write_text(text, encoding="utf-8")
    assert main(["policy", "check", str(file)]) == 2
    err = capsys.readouterr().err
    assert named in err, err
