"""The signed directory (PROTOCOL §1, §7): the hub itself, its partners, their keys."""

from __future__ import annotations

from gateway.crypto.encoding import b64u_encode
from gateway.crypto.keys import OrgKeys
from tests.conftest import PARTNERS, Network
from tests.web.helpers import Wire, assert_ok, assert_problem


async def test_directory_needs_a_signature(network: Network, wire: Wire) -> None:
    assert_problem(await wire.send("GET", "/api/v1/directory"), 401, "unauthenticated")


async def test_directory_lists_the_hub_with_its_keys(network: Network, wire: Wire) -> None:
    reply = await wire.signed(network.keys["politie-test"], "GET", "/api/v1/directory")
    orgs = {o["org"]: o for o in assert_ok(reply, 200)["organisations"]}
    keys = OrgKeys.load(network.settings.node.key_file)
    hub = orgs[network.settings.node.org]
    assert hub["role"] == "hub"
    assert hub["status"] == "active"
    assert hub["signing_key"] == b64u_encode(keys.signing_key)
    assert hub["signing_kid"] == keys.signing_kid
    assert hub["encryption_key"] == b64u_encode(keys.encryption_key)
    assert hub["encryption_kid"] == keys.encryption_kid


async def test_directory_lists_the_partners_and_not_the_outsider(
    network: Network, wire: Wire
) -> None:
    reply = await wire.signed(network.keys["vt-test"], "GET", "/api/v1/directory")
    orgs = {o["org"]: o for o in assert_ok(reply, 200)["organisations"]}
    assert set(orgs) == {network.settings.node.org, *(org for org, _, _ in PARTNERS)}
    for org, role, domain in PARTNERS:
        entry, keys = orgs[org], network.keys[org]
        assert (entry["role"], entry["domain"], entry["status"]) == (role, domain, "active")
        assert entry["signing_key"] == b64u_encode(keys.signing_key)
        assert entry["encryption_kid"] == keys.encryption_kid
        assert {"name", "signing_kid", "encryption_key"} <= set(entry)
