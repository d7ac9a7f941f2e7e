"""Pseudonyms (PROTOCOL §6): the RFC 9497 A.1.1 vectors through a hub and a running
pseudonymiser, the client library's input checks, and the hub's refusals."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from gateway.adapters.client import HubError
from gateway.adapters.pseudonym import PseudonymInputError, blind_people, check_birth_date
from gateway.clock import SystemClock
from gateway.crypto.encoding import b64u_decode, b64u_encode
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import blind, finalize, pid_input
from gateway.services import admin
from tests.conftest import BIRTH, BSN, free_port, make_hub_dir
from tests.crypto.test_oprf import RFC_BLIND, RFC_VECTORS
from tests.federation.conftest import NationalNet
from tests.vectors import load_v1
from tests.web.helpers import Wire, assert_problem

TODAY = dt.date(2026, 6, 1)


async def test_rfc9497_a11_vectors_through_hub_and_pseudonymiser(nat: NationalNet) -> None:
    """Blind with the RFC's blind here, BlindEvaluate at the running pseudonymiser
    (reached through the hub's evaluate), Finalize here: the RFC's bytes at each step."""
    zvh = nat.client(nat.regions[0].zvh)
    inputs = [bytes.fromhex(v[0]) for v in RFC_VECTORS]
    blinded = [blind(x, RFC_BLIND)[1] for x in inputs]
    assert [b.hex() for b in blinded] == [v[1] for v in RFC_VECTORS]
    res = await zvh.call(
        "POST", "/api/v1/pseudonyms/evaluate", body={"blinded": [b64u_encode(b) for b in blinded]}
    )
    evaluated = [b64u_decode(e) for e in res["evaluated"]]
    assert [e.hex() for e in evaluated] == [v[2] for v in RFC_VECTORS]
    outputs = [finalize(x, RFC_BLIND, e).hex() for x, e in zip(inputs, evaluated, strict=True)]
    assert outputs == [v[3] for v in RFC_VECTORS]


async def test_project_pid_vector_through_both_hubs(nat: NationalNet) -> None:
    """The v1 vector's pid, computed by the client library at either hub."""
    vector = load_v1()["oprf"]
    a = await nat.client(nat.regions[0].zvh).pseudonym(BSN, "1980-02-03")
    b = await nat.client(nat.regions[1].om).pseudonym(BSN, BIRTH)
    assert a == b == vector["pid"]


async def test_batch_of_pseudonyms_and_counts(nat: NationalNet) -> None:
    people = [(BSN, BIRTH), ("111222333", "19751130"), ("999990019", "19700000")]
    pids = await nat.client(nat.regions[0].om).pseudonyms(people)
    assert len(set(pids)) == 3
    assert all(len(p) == 128 for p in pids)
    text = nat.pseudonymiser.node.metrics.render().decode()
    assert f'zvh_gateway_oprf_evaluations_total{{org="{nat.regions[0].hub}"}}' in text
    await nat.pseudonymiser.service.flush_usage()


@pytest.mark.parametrize(
    ("bsn", "birth", "message"),
    [
        ("23085710", BIRTH, "exactly 9 digits"),
        ("2308571O3", BIRTH, "exactly 9 digits"),
        ("230857104", BIRTH, "11-test"),
        ("000000000", BIRTH, "11-test"),
        (BSN, "1980-2-3", "YYYY-MM-DD"),
        (BSN, "19800231", "does not exist"),
        (BSN, "19801301", "01-12"),
        (BSN, "19800005", "needs a birth month"),
        (BSN, "20990101", "future"),
        (BSN, "18000101", "1850"),
        (BSN, "1980/02/03", "YYYY-MM-DD"),
    ],
)
def test_client_checks_bsn_and_date_without_echoing(bsn: str, birth: str, message: str) -> None:
    with pytest.raises(PseudonymInputError) as err:
        blind_people([(BSN, BIRTH), (bsn, birth)], TODAY)
    assert message in str(err.value)
    assert bsn not in str(err.value)
    assert birth not in str(err.value)


def test_birth_date_forms() -> None:
    assert check_birth_date(dt.date(1980, 2, 3), TODAY) == "19800203"
    assert check_birth_date("1980-02-03", TODAY) == "19800203"
    assert check_birth_date("19800000", TODAY) == "19800000"  # unknown month and day
    assert check_birth_date("19800200", TODAY) == "19800200"  # unknown day
    with pytest.raises(PseudonymInputError):
        check_birth_date(dt.datetime(1980, 2, 3, tzinfo=dt.UTC), TODAY)


async def test_invalid_input_sends_nothing(nat: NationalNet) -> None:
    zvh = nat.client(nat.regions[0].zvh)
    with pytest.raises(PseudonymInputError):
        await zvh.pseudonym("230857104", BIRTH)
    text = nat.hub(0).metrics.render().decode()
    assert "zvh_gateway_oprf_evaluations_total{" not in text


async def test_hub_refuses_what_is_not_a_group_element(nat: NationalNet) -> None:
    zvh = nat.client(nat.regions[0].zvh)
    good = b64u_encode(blind(pid_input(BSN, BIRTH))[1])
    # The identity, a non-canonical encoding, and 43 characters whose trailing bits are
    # not those of any 32 bytes.
    for bad in (b64u_encode(bytes(32)), b64u_encode(b"\xff" * 32), "A" * 42 + "B"):
        with pytest.raises(HubError) as err:
            await zvh.call("POST", "/api/v1/pseudonyms/evaluate", body={"blinded": [good, bad]})
        assert err.value.status == 400
        assert err.value.problem["errors"][0]["loc"] == ["blinded", 1]
    with pytest.raises(HubError) as err:
        await zvh.call("POST", "/api/v1/pseudonyms/evaluate", body={"blinded": [good] * 101})
    assert err.value.status == 400


async def test_only_members_of_this_hub_evaluate(nat: NationalNet) -> None:
    region = nat.regions[0]
    hub = nat.hub(0)
    element = b64u_encode(blind(pid_input(BSN, BIRTH))[1])
    wire = Wire(nat.urls[region.hub], hub.settings.authority)
    try:
        # A member of another region is not registered at this hub.
        reply = await wire.signed(
            nat.keys[nat.regions[1].zvh],
            "POST",
            "/api/v1/pseudonyms/evaluate",
            {"blinded": [element]},
        )
        assert_problem(reply, 401, "unauthenticated")
        # An incidental partner never needs a pid.
        woon = OrgKeys.generate("woon-x")
        admin.add_partner(
            hub.settings,
            SystemClock(),
            public=woon.public(),
            role="incidental",
            domain="sociaal",
            name=None,
        )
        await hub.directory.reload()
        reply = await wire.signed(
            woon, "POST", "/api/v1/pseudonyms/evaluate", {"blinded": [element]}
        )
        body = assert_problem(reply, 403, "forbidden-role")
        assert len(body["ledger"]) == 1
        # A partner whose accession was revoked is no longer a member.
        protocol = (await nat.client(region.vt).protocols())[0]["protocol_id"]
        assert admin.revoke_accession(hub.settings, SystemClock(), protocol, region.vt)
        reply = await wire.signed(
            nat.keys[region.vt], "POST", "/api/v1/pseudonyms/evaluate", {"blinded": [element]}
        )
        assert_problem(reply, 403, "not-a-member")
    finally:
        await wire.close()


async def test_hub_without_national_section_says_503(tmp_path: Path) -> None:
    from gateway.web.hub_app import HubServer, build_hub
    from tests.conftest import Network, accede_all

    settings, keys = make_hub_dir(tmp_path, free_port())
    server = HubServer(build_hub(settings))
    await server.start()
    net = Network(f"http://127.0.0.1:{settings.http.port}", settings, server.hub, keys)
    try:
        await accede_all(net)
        zvh = net.client("zvh-test")
        with pytest.raises(HubError) as err:
            await zvh.pseudonym(BSN, BIRTH)
        assert (err.value.status, err.value.code) == (503, "service-unavailable")
        with pytest.raises(HubError) as err:
            await zvh.known_check("ab" * 64, "huiselijk-geweld")
        assert (err.value.status, err.value.code) == (503, "service-unavailable")
    finally:
        for c in net.clients:
            await c.close()
        await server.stop()


async def test_canary_mismatch_suspends_evaluation(
    nat: NationalNet, caplog: pytest.LogCaptureFixture
) -> None:
    hub = nat.hub(0)
    zvh = nat.client(nat.regions[0].zvh)
    assert await hub.national.check_canary() is True
    assert "zvh_gateway_national_canary_match 1.0" in hub.metrics.render().decode()
    # The pinned pid no longer matches what the pseudonymiser computes: as if its key
    # had been replaced silently.
    settings = hub.national._settings
    assert settings is not None
    hub.national._settings = settings.model_copy(update={"canary_pid": "00" * 64})
    with caplog.at_level(logging.ERROR):
        assert await hub.national.check_canary() is False
    assert any("canary MISMATCH" in r.getMessage() for r in caplog.records)
    assert "zvh_gateway_national_canary_match 0.0" in hub.metrics.render().decode()
    with pytest.raises(HubError) as err:
        await zvh.pseudonym(BSN, BIRTH)
    assert (err.value.status, err.value.code) == (503, "service-unavailable")
    hub.national._settings = settings
    assert await hub.national.check_canary() is True
    assert len(await zvh.pseudonym(BSN, BIRTH)) == 128
