"""Cases over real HTTP (PROTOCOL §3, §7): only the region's ZVH organisation registers,
extends and closes them; every refusal by role is a ledger entry the caller is told of.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from tests.conftest import Network
from tests.web.helpers import (
    CASE,
    THEME,
    Wire,
    assert_durable,
    assert_ledger_refs,
    assert_ok,
    assert_problem,
    ledger_size,
    locs,
    open_case,
)

PID = "ab" * 64


def registration(case_ref: str = CASE) -> dict[str, Any]:
    return {
        "case_ref": case_ref,
        "theme": THEME,
        "subjects": [{"subject_ref": "S1", "pid": PID}],
        "participants": ["politie-test", "vt-test"],
    }


async def test_zvh_registers_a_case(network: Network, wire: Wire) -> None:
    reply = await wire.signed(network.keys["zvh-test"], "POST", "/api/v1/cases", registration())
    body = assert_ok(reply, 201)
    assert body["case_ref"] == CASE
    assert body["status"] == "open"
    assert body["participants"] == ["politie-test", "vt-test", "zvh-test"]
    [ref] = assert_ledger_refs(body, 1)
    leaf = await assert_durable(network.settings.node.database, ref)
    assert leaf.entry_type == "case-registered"
    # Pids are for the national check only, never in a ledger body.
    assert PID not in str(leaf.body)


class RoleDenial(NamedTuple):
    target: str
    payload: dict[str, Any]
    action: str  # as the ledger's `denied` entry names it


ROLE_DENIALS = {
    "register": RoleDenial("/api/v1/cases", registration(), "register-case"),
    "add-participant": RoleDenial(
        f"/api/v1/cases/{CASE}/participants", {"org": "ggz-test"}, "add-participant"
    ),
    "close": RoleDenial(f"/api/v1/cases/{CASE}/close", {}, "close-case"),
}


@pytest.mark.parametrize("denial", ROLE_DENIALS.values(), ids=ROLE_DENIALS.keys())
@pytest.mark.parametrize("org", ["politie-test", "woon-test"])
async def test_a_partner_may_not_manage_cases(
    network: Network, wire: Wire, org: str, denial: RoleDenial
) -> None:
    if denial.action != "register-case":
        await open_case(network)
    reply = await wire.signed(network.keys[org], "POST", denial.target, denial.payload)
    problem = assert_problem(reply, 403, "forbidden-role")
    [ref] = assert_ledger_refs(problem, 1)
    leaf = await assert_durable(network.settings.node.database, ref)
    assert leaf.entry_type == "denied"
    assert leaf.body is not None
    assert leaf.body["code"] == "forbidden-role"
    assert leaf.body["action"] == denial.action
    assert leaf.body["org"] == org


async def test_a_refused_registration_registers_nothing(network: Network, wire: Wire) -> None:
    police, zvh = network.keys["politie-test"], network.keys["zvh-test"]
    reply = await wire.signed(police, "POST", "/api/v1/cases", registration())
    assert_problem(reply, 403, "forbidden-role")
    assert_ok(await wire.signed(zvh, "POST", "/api/v1/cases", registration()), 201)


async def test_forbidden_role_comes_before_case_exists_and_not_found(
    network: Network, wire: Wire
) -> None:
    """PROTOCOL §3: a partner learns nothing about which cases exist."""
    await open_case(network)
    police = network.keys["politie-test"]
    exists = await wire.signed(police, "POST", "/api/v1/cases", registration())
    assert_problem(exists, 403, "forbidden-role")
    unknown = await wire.signed(police, "POST", "/api/v1/cases/C-404/close", {})
    assert_problem(unknown, 403, "forbidden-role")


async def test_registering_a_case_twice_is_a_conflict(network: Network, wire: Wire) -> None:
    zvh = network.keys["zvh-test"]
    assert_ok(await wire.signed(zvh, "POST", "/api/v1/cases", registration()), 201)
    size = await ledger_size(network.settings.node.database)
    reply = await wire.signed(zvh, "POST", "/api/v1/cases", registration())
    assert_problem(reply, 409, "case-exists")
    assert await ledger_size(network.settings.node.database) == size


@pytest.mark.parametrize(
    ("target", "payload"),
    [("/api/v1/cases/C-404/participants", {"org": "ggz-test"}), ("/api/v1/cases/C-404/close", {})],
    ids=["add-participant", "close"],
)
async def test_unknown_case_is_not_found(
    network: Network, wire: Wire, target: str, payload: dict[str, Any]
) -> None:
    reply = await wire.signed(network.keys["zvh-test"], "POST", target, payload)
    assert_problem(reply, 404, "not-found")


async def test_add_participant(network: Network, wire: Wire) -> None:
    await open_case(network)
    reply = await wire.signed(
        network.keys["zvh-test"], "POST", f"/api/v1/cases/{CASE}/participants", {"org": "ggz-test"}
    )
    body = assert_ok(reply, 200)
    assert body["participants"] == ["ggz-test", "politie-test", "vt-test", "zvh-test"]
    [ref] = assert_ledger_refs(body, 1)
    leaf = await assert_durable(network.settings.node.database, ref)
    assert leaf.entry_type == "participant-added"


async def test_adding_an_unknown_organisation_is_a_400(network: Network, wire: Wire) -> None:
    await open_case(network)
    reply = await wire.signed(
        network.keys["zvh-test"], "POST", f"/api/v1/cases/{CASE}/participants", {"org": "nobody-x"}
    )
    problem = assert_problem(reply, 400, "invalid-request")
    assert locs(problem)[0][0] == "org"
    assert "nobody-x" not in reply.text


async def test_unknown_organisation_loc_is_the_field_path(network: Network, wire: Wire) -> None:
    await open_case(network)
    reply = await wire.signed(
        network.keys["zvh-test"], "POST", f"/api/v1/cases/{CASE}/participants", {"org": "nobody-x"}
    )
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["org"]]


async def test_close_a_case(network: Network, wire: Wire) -> None:
    await open_case(network)
    reply = await wire.signed(network.keys["zvh-test"], "POST", f"/api/v1/cases/{CASE}/close", {})
    body = assert_ok(reply, 200)
    assert body["status"] == "closed"
    assert isinstance(body["closed_ms"], int)
    [ref] = assert_ledger_refs(body, 1)
    leaf = await assert_durable(network.settings.node.database, ref)
    assert leaf.entry_type == "case-closed"


async def test_a_closed_case_takes_no_participants(network: Network, wire: Wire) -> None:
    await open_case(network)
    zvh = network.keys["zvh-test"]
    assert_ok(await wire.signed(zvh, "POST", f"/api/v1/cases/{CASE}/close", {}), 200)
    reply = await wire.signed(
        zvh, "POST", f"/api/v1/cases/{CASE}/participants", {"org": "ggz-test"}
    )
    assert_problem(reply, 409, "case-closed")
