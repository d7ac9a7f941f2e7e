"""Known-checks at a hub (PROTOCOL §7): hubs and contact routes from the index and the
hub's own cases, never content; who may ask, for which purpose; ledger entries."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest

from gateway.adapters.client import HubError
from gateway.crypto.encoding import sha256
from tests.conftest import BIRTH, BSN
from tests.federation.conftest import NationalNet, run_national
from tests.federation.support import CASE_THEME, ledger_bodies, rows, signed_headers, synced


async def _register(nat: NationalNet, i: int, case_ref: str, pid: str) -> dict[str, object]:
    region = nat.regions[i]
    res = await nat.client(region.zvh).register_case(
        case_ref, CASE_THEME, [("S1", pid)], [region.vt]
    )
    await synced(nat.hub(i))
    return res


async def test_match_names_the_hub_and_its_contact_route_only(nat: NationalNet) -> None:
    a, b = nat.regions
    pid = await nat.client(a.zvh).pseudonym(BSN, BIRTH)
    before = int(time.time() * 1000)
    await _register(nat, 0, "ZVH-A-1", pid)
    om = nat.client(b.om)
    res = await om.known_check(await om.pseudonym(BSN, BIRTH), "zsm-advies")
    assert set(res) == {"check_id", "matches", "unreachable", "ledger"}
    assert res["unreachable"] == []
    [match] = res["matches"]
    assert set(match) == {"hub", "contact", "status", "since_ms"}
    assert (match["hub"], match["contact"], match["status"]) == (a.hub, a.contact, "open")
    assert before - 5000 <= match["since_ms"] <= int(time.time() * 1000)
    assert "ZVH-A-1" not in str(res)
    # Another person is not known anywhere.
    other = await om.pseudonym("111222333", "19751130")
    assert (await om.known_check(other, "zsm-advies"))["matches"] == []


async def test_every_check_is_a_ledger_entry_with_purpose_and_pid_hash(nat: NationalNet) -> None:
    b = nat.regions[1]
    zvh = nat.client(b.zvh)
    pid = await zvh.pseudonym(BSN, BIRTH)
    res = await zvh.known_check(pid, "verward-gedrag")
    database = nat.hub(1).settings.node.database
    [entry] = ledger_bodies(database, "known-check")
    assert entry["check_id"] == res["check_id"]
    assert (entry["org"], entry["purpose"]) == (b.zvh, "verward-gedrag")
    assert entry["pid_sha256"] == sha256(bytes.fromhex(pid)).hex()
    assert (entry["hubs"], entry["unreachable"]) == ([], [])
    [(index,)] = rows(database, "SELECT idx FROM ledger WHERE type = 'known-check'")
    assert res["ledger"][0]["index"] == index
    # The pid itself is nowhere in this hub's database (it has no case with it).
    for path in database.parent.glob(database.name + "*"):
        assert pid.encode() not in path.read_bytes()


async def test_own_open_cases_answer_even_without_the_index(nat: NationalNet) -> None:
    a = nat.regions[0]
    zvh = nat.client(a.zvh)
    pid = await zvh.pseudonym(BSN, BIRTH)
    await nat.stop_index()
    await zvh.register_case("ZVH-A-2", CASE_THEME, [("S1", pid)], [a.vt])
    res = await zvh.known_check(pid, CASE_THEME)
    assert res["unreachable"] == ["index"]
    assert [(m["hub"], m["status"], m["contact"]) for m in res["matches"]] == [
        (a.hub, "open", a.contact)
    ]


async def test_who_may_ask_and_for_what(nat: NationalNet) -> None:
    a, b = nat.regions
    pid = await nat.client(a.zvh).pseudonym(BSN, BIRTH)
    await _register(nat, 0, "ZVH-A-3", pid)
    # Veilig Thuis is a member, but not one the hub lets run known-checks.
    with pytest.raises(HubError) as err:
        await nat.client(a.vt).known_check(pid, CASE_THEME)
    assert (err.value.status, err.value.code) == (403, "forbidden-role")
    [denied] = ledger_bodies(nat.hub(0).settings.node.database, "denied")[-1:]
    assert (denied["action"], denied["org"], denied["code"]) == (
        "known-check",
        a.vt,
        "forbidden-role",
    )
    assert err.value.problem["ledger"]
    # A purpose that is not a theme of the region.
    with pytest.raises(HubError) as err:
        await nat.client(a.om).known_check(pid, "nieuwsgierigheid")
    assert (err.value.status, err.value.problem["errors"][0]["loc"]) == (400, ["purpose"])
    # Bound to a case: it must exist, and the caller must take part in it.
    with pytest.raises(HubError) as err:
        await nat.client(a.om).known_check(pid, CASE_THEME, case_ref="NOPE-1")
    assert err.value.status == 404
    with pytest.raises(HubError) as err:
        await nat.client(a.om).known_check(pid, CASE_THEME, case_ref="ZVH-A-3")
    assert (err.value.status, err.value.code) == (403, "not-a-participant")
    res = await nat.client(a.zvh).known_check(pid, CASE_THEME, case_ref="ZVH-A-3")
    assert [m["hub"] for m in res["matches"]] == [a.hub]
    assert (
        ledger_bodies(nat.hub(0).settings.node.database, "known-check")[-1]["case_ref"] == "ZVH-A-3"
    )
    # A pid that is not 128 hex characters is a 400, never a lookup.
    with pytest.raises(HubError) as err:
        await nat.client(b.om).known_check(pid.upper(), CASE_THEME)
    assert err.value.status == 400


async def test_themes_the_hub_allows(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    async with run_national(
        tmp_path, hubs=1, national={"known_check_themes": ["zsm-advies"]}
    ) as nat:
        om = nat.client(nat.regions[0].om)
        pid = await om.pseudonym(BSN, BIRTH)
        assert (await om.known_check(pid, "zsm-advies"))["matches"] == []
        with pytest.raises(HubError) as err:
            await om.known_check(pid, CASE_THEME)
        assert (err.value.status, err.value.code) == (403, "forbidden-role")


async def test_partner_over_its_limit_gets_429_with_retry_after(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    limits = {"known_check_rate_per_minute": 3, "evaluate_rate_per_minute": 4}
    async with run_national(tmp_path, hubs=1, national=limits) as nat:
        region = nat.regions[0]
        hub = nat.hub(0)
        om = nat.client(region.om)
        pids = await om.pseudonyms([(BSN, BIRTH), ("111222333", "19751130")])
        for _ in range(3):
            await om.known_check(pids[0], "zsm-advies")
        body = json.dumps({"pid": pids[0], "purpose": "zsm-advies"}).encode()
        headers = signed_headers(
            nat.keys[region.om], hub.settings.authority, "POST", "/api/v1/known-checks", body
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                nat.urls[region.hub] + "/api/v1/known-checks", data=body, headers=headers
            ) as resp,
        ):
            assert resp.status == 429
            assert (await resp.json(content_type=None))["code"] == "rate-limited"
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
        # Another organisation has a bucket of its own.
        assert (await nat.client(region.zvh).known_check(pids[0], "zsm-advies"))["matches"] == []
        # Evaluations are limited per blinded element: 2 used, 3 more do not fit.
        with pytest.raises(HubError) as err:
            await om.pseudonyms([(BSN, BIRTH)] * 3)
        assert err.value.status == 429
        text = hub.metrics.render().decode()
        assert f'org="{region.om}",route="/api/v1/known-checks"' in text
