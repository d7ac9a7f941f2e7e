"""The national index and the pseudonymiser as services (PROTOCOL §6, §7): their trust
lists, what a hub may do there, leases, and their own append-only records."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.crypto.encoding import b64u_encode, sha256
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import blind, pid_input
from gateway.web.state import Hub
from tests.conftest import BIRTH, BSN
from tests.federation.conftest import NationalNet, run_national
from tests.federation.support import ledger_bodies, rows, signed_headers

PID = "5e" * 64
DAY_MS = 86_400_000


async def call(  # noqa: PLR0917 - reads like the request line it sends
    nat: NationalNet, node: str, keys: OrgKeys, method: str, path: str, payload: Any = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A signed request to the pseudonymiser or the index, as `keys`."""
    server = nat.pseudonymiser if node == "pseudonymiser" else nat.index
    url = nat.urls[server.node.keys.org]
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = signed_headers(keys, server.node.settings.authority, method, path, body)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, data=body or None, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


def registration(hub: Hub, lease_ms: int, status: str = "open") -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "hub": hub.keys.org,
        "status": status,
        "since_ms": now - 1000,
        "lease_until_ms": now + lease_ms,
    }


def element() -> str:
    return b64u_encode(blind(pid_input(BSN, BIRTH))[1])


async def test_callers_outside_the_trust_list_get_401(nat: NationalNet) -> None:
    """Acceptance 4: a hub that is not in the pseudonymiser's or the index's trust list,
    and any partner, is refused with 401 (and a trusted hub is not)."""
    rogue = OrgKeys.generate("hub-rogue")
    partner = nat.keys[nat.regions[0].zvh]
    trusted = nat.hub(0).keys
    cases = [
        ("pseudonymiser", "POST", "/api/v1/oprf/evaluate", {"blinded": [element()]}),
        ("index", "POST", "/api/v1/index/lookups", {"pid": PID}),
        ("index", "PUT", f"/api/v1/index/registrations/{PID}", registration(nat.hub(0), 60_000)),
        ("index", "DELETE", f"/api/v1/index/registrations/{PID}", None),
    ]
    for node, method, path, payload in cases:
        for keys in (rogue, partner):
            status, body, _ = await call(nat, node, keys, method, path, payload)
            assert (status, body["code"]) == (401, "unauthenticated"), (node, path, keys.org)
        status, body, _ = await call(nat, node, trusted, method, path, payload)
        assert status == 200, body
    # A revoked hub is out as well.
    from gateway.clock import SystemClock
    from gateway.services import admin

    assert admin.revoke_partner(nat.index.node.settings, SystemClock(), trusted.org)
    await nat.index.node.directory.reload()
    status, _, _ = await call(nat, "index", trusted, "POST", "/api/v1/index/lookups", {"pid": PID})
    assert status == 401


async def test_the_pseudonymiser_refuses_what_is_not_an_element(nat: NationalNet) -> None:
    hub = nat.hub(0)
    for bad in ("A" * 42 + "B", b64u_encode(bytes(32))):
        status, body, _ = await call(
            nat,
            "pseudonymiser",
            hub.keys,
            "POST",
            "/api/v1/oprf/evaluate",
            {"blinded": [element(), bad]},
        )
        assert (status, body["errors"][0]["loc"]) == (400, ["blinded", 1])
    status, body, _ = await call(
        nat,
        "pseudonymiser",
        hub.keys,
        "POST",
        "/api/v1/oprf/evaluate",
        {"blinded": [element()] * 101},
    )
    assert status == 400


async def test_a_hub_registers_for_itself_only(nat: NationalNet) -> None:
    me, other = nat.hub(0), nat.hub(1)
    path = f"/api/v1/index/registrations/{PID}"
    status, body, _ = await call(nat, "index", me.keys, "PUT", path, registration(other, 60_000))
    assert (status, body["code"]) == (403, "forbidden-role")
    assert body["ledger"]
    status, body, _ = await call(nat, "index", me.keys, "DELETE", path, {"hub": other.keys.org})
    assert (status, body["code"]) == (403, "forbidden-role")
    denied = ledger_bodies(nat.index.node.settings.node.database, "denied")
    assert [d["action"] for d in denied] == ["index-register", "index-delete"]
    # The other hub's registration cannot be removed by this one.
    await call(nat, "index", other.keys, "PUT", path, registration(other, 60_000))
    status, body, _ = await call(nat, "index", me.keys, "DELETE", path, None)
    assert (status, body) == (200, {"deleted": False})
    _, found, _ = await call(nat, "index", me.keys, "POST", "/api/v1/index/lookups", {"pid": PID})
    assert [r["hub"] for r in found["registrations"]] == [other.keys.org]


async def test_register_renew_lookup_delete_and_expiry(nat: NationalNet) -> None:
    a, b = nat.hub(0), nat.hub(1)
    path = f"/api/v1/index/registrations/{PID}"
    lookup = ("POST", "/api/v1/index/lookups", {"pid": PID})
    reg_a = registration(a, 60_000)
    status, body, _ = await call(nat, "index", a.keys, "PUT", path, reg_a)
    assert (status, body) == (200, {"registration": reg_a})
    short = registration(b, 400, status="closed")
    assert (await call(nat, "index", b.keys, "PUT", path, short))[0] == 200
    _, found, _ = await call(nat, "index", b.keys, *lookup)
    assert found["registrations"] == sorted([reg_a, short], key=lambda r: str(r["hub"]))
    # Renewal: the same registration with a later lease.
    renewed = {**reg_a, "lease_until_ms": reg_a["lease_until_ms"] + 5000}
    assert (await call(nat, "index", a.keys, "PUT", path, renewed))[0] == 200
    await asyncio.sleep(0.5)  # b's lease runs out: it is never returned again
    _, found, _ = await call(nat, "index", a.keys, *lookup)
    assert found["registrations"] == [renewed]
    status, body, _ = await call(nat, "index", a.keys, "DELETE", path, None)
    assert (status, body) == (200, {"deleted": True})
    _, found, _ = await call(nat, "index", a.keys, *lookup)
    assert found["registrations"] == []
    # Expired rows are deleted by the pruner (here: every slice at once).
    database = nat.index.node.settings.node.database
    assert rows(database, "SELECT hub FROM index_registrations") == [(b.keys.org,)]
    assert sum([await nat.index.service.prune_slice(i) for i in range(256)]) == 1
    assert rows(database, "SELECT hub FROM index_registrations") == []


async def test_leases_are_bounded_and_checked(nat: NationalNet) -> None:
    hub = nat.hub(0)
    path = f"/api/v1/index/registrations/{PID}"
    far = registration(hub, 400 * DAY_MS)
    status, body, _ = await call(nat, "index", hub.keys, "PUT", path, far)
    assert status == 200
    assert body["registration"]["lease_until_ms"] <= int(time.time() * 1000) + 31 * DAY_MS
    past = {**far, "lease_until_ms": 1000}
    status, body, _ = await call(nat, "index", hub.keys, "PUT", path, past)
    assert (status, body["errors"][0]["loc"]) == (400, ["lease_until_ms"])
    status, body, _ = await call(
        nat, "index", hub.keys, "PUT", "/api/v1/index/registrations/abc", far
    )
    assert (status, body["errors"][0]["loc"]) == (400, ["path", "pid"])
    status, body, _ = await call(nat, "index", hub.keys, "PUT", path, {**far, "status": "maybe"})
    assert status == 400


async def test_the_index_records_with_pid_hashes_and_skips_plain_renewals(nat: NationalNet) -> None:
    hub = nat.hub(0)
    path = f"/api/v1/index/registrations/{PID}"
    reg = registration(hub, 60_000)
    for extra in (0, 1000, 2000):  # a registration and two renewals
        await call(
            nat,
            "index",
            hub.keys,
            "PUT",
            path,
            {**reg, "lease_until_ms": reg["lease_until_ms"] + extra},
        )
    await call(nat, "index", hub.keys, "PUT", path, {**reg, "status": "closed"})
    await call(nat, "index", hub.keys, "POST", "/api/v1/index/lookups", {"pid": PID})
    await call(nat, "index", hub.keys, "DELETE", path, None)
    database = nat.index.node.settings.node.database
    digest = sha256(bytes.fromhex(PID)).hex()
    registered = ledger_bodies(database, "index-registered")
    assert [r["status"] for r in registered] == ["open", "closed"]
    assert {r["pid_sha256"] for r in registered} == {digest}
    [looked] = ledger_bodies(database, "index-lookup")
    assert (looked["hub"], looked["pid_sha256"], looked["hubs"]) == (
        hub.keys.org,
        digest,
        [hub.keys.org],
    )
    assert ledger_bodies(database, "index-deleted") == [
        {
            "type": "index-deleted",
            "time_ms": ledger_bodies(database, "index-deleted")[0]["time_ms"],
            "hub": hub.keys.org,
            "pid_sha256": digest,
        }
    ]
    ledger = b"".join(
        r[0] for r in rows(database, "SELECT body FROM ledger WHERE body IS NOT NULL")
    )
    assert PID.encode() not in ledger


async def test_a_hub_over_the_pseudonymisers_limit(tmp_path: Path) -> None:
    async with run_national(tmp_path, hubs=1, pseudonymiser={"rate_limit_per_minute": 5}) as nat:
        hub = nat.hub(0)
        status, body, _ = await call(
            nat,
            "pseudonymiser",
            hub.keys,
            "POST",
            "/api/v1/oprf/evaluate",
            {"blinded": [element()] * 3},
        )
        assert status == 200
        assert len(body["evaluated"]) == 3
        # 1 token left (the hub's canary check used one).
        status, body, headers = await call(
            nat,
            "pseudonymiser",
            hub.keys,
            "POST",
            "/api/v1/oprf/evaluate",
            {"blinded": [element()] * 3},
        )
        assert (status, body["code"]) == (429, "rate-limited")
        assert int(headers["Retry-After"]) >= 1
        # Through the hub, its partner hears the same.
        from gateway.adapters.client import HubError

        with pytest.raises(HubError) as err:
            await nat.client(nat.regions[0].zvh).pseudonyms([(BSN, BIRTH)] * 3)
        assert (err.value.status, err.value.code) == (429, "rate-limited")


async def test_the_pseudonymiser_records_its_key_and_counts(tmp_path: Path) -> None:
    async with run_national(tmp_path, hubs=1) as nat:
        database = nat.pseudonymiser.node.settings.node.database
        await nat.pseudonymiser.service.flush_usage()  # the hub's canary checks so far

        def used() -> int:
            counts = rows(database, "SELECT org, evaluations FROM oprf_usage")
            assert {org for org, _ in counts} <= {nat.regions[0].hub}
            return sum(int(n) for _, n in counts)

        before = used()
        assert before >= 1
        await nat.client(nat.regions[0].zvh).pseudonyms([(BSN, BIRTH)] * 5)
        await nat.pseudonymiser.service.flush_usage()
        assert used() == before + 5
        [(day,)] = rows(database, "SELECT day FROM oprf_usage")
        assert len(day) == 10
        [key] = ledger_bodies(database, "oprf-key-in-use")
        assert key["key_id"] == nat.pseudonymiser.service.key_id
        assert key["previous_key_id"] is None
