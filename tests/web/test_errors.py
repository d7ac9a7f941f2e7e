"""PROTOCOL §3 over real HTTP: 400 `invalid-request` lists field paths (`loc`) and never
echoes what was submitted; other HTTP errors are problems too.

Every invalid body carries MARKER in the offending place: the problem may name the
field, but the submitted value (possibly personal data) must not come back.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Network
from tests.web.helpers import (
    CASE,
    THEME,
    Wire,
    assert_ok,
    assert_problem,
    encode_json,
    locs,
    open_case,
)

MARKER = "zz-marker-5e1f"
PID = "ab" * 64


def case_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "case_ref": CASE,
        "theme": THEME,
        "subjects": [{"subject_ref": "S1", "pid": PID}],
        "participants": ["politie-test"],
    }
    body.update(changes)
    return body


def without(name: str) -> dict[str, Any]:
    body = case_body()
    del body[name]
    return body


INVALID_CASES: list[tuple[str, bytes, list[str | int]]] = [
    ("not-json", f"{{{MARKER}".encode(), []),
    ("not-utf8", b"\xff\xfe" + MARKER.encode(), []),
    ("json-array", encode_json([MARKER, case_body()]), []),
    ("json-string", encode_json(MARKER), []),
    ("missing-field", encode_json(without("theme")), ["theme"]),
    ("extra-field", encode_json(case_body(comment=MARKER)), ["comment"]),
    ("wrong-type", encode_json(case_body(participants=MARKER)), ["participants"]),
    (
        "wrong-nested-type",
        encode_json(case_body(subjects=[{"subject_ref": MARKER, "pid": 12345}])),
        ["subjects", 0, "pid"],
    ),
    ("number-for-string", encode_json(case_body(case_ref=12345)), ["case_ref"]),
    ("bad-case-ref", encode_json(case_body(case_ref=f"{MARKER}/../x")), ["case_ref"]),
    ("bad-org-id", encode_json(case_body(participants=[f"{MARKER}!"])), ["participants", 0]),
    (
        "bad-pid",
        encode_json(case_body(subjects=[{"subject_ref": "S1", "pid": MARKER}])),
        ["subjects", 0, "pid"],
    ),
    ("no-subjects", encode_json(case_body(subjects=[])), ["subjects"]),
    ("unknown-theme", encode_json(case_body(theme=MARKER)), ["theme"]),
]


@pytest.mark.parametrize(
    ("body", "loc"), [(b, loc) for _, b, loc in INVALID_CASES], ids=[n for n, _, _ in INVALID_CASES]
)
async def test_invalid_case_registration_lists_the_field_and_echoes_nothing(
    network: Network, wire: Wire, body: bytes, loc: list[str | int]
) -> None:
    reply = await wire.signed(network.keys["zvh-test"], "POST", "/api/v1/cases", raw=body)
    problem = assert_problem(reply, 400, "invalid-request")
    assert loc in locs(problem)
    for error in problem["errors"]:
        assert isinstance(error["msg"], str)
    assert MARKER not in reply.text
    assert MARKER.upper() not in reply.text.upper()


async def test_every_invalid_field_is_listed(network: Network, wire: Wire) -> None:
    body = {"case_ref": f"{MARKER}!", "subjects": MARKER, "participants": [1], "x": MARKER}
    reply = await wire.signed(network.keys["zvh-test"], "POST", "/api/v1/cases", body)
    problem = assert_problem(reply, 400, "invalid-request")
    assert sorted(map(str, locs(problem))) == sorted(
        map(str, [["case_ref"], ["theme"], ["subjects"], ["participants", 0], ["x"]])
    )
    assert MARKER not in reply.text


async def test_unknown_participant_is_a_400_naming_its_index(network: Network, wire: Wire) -> None:
    body = case_body(participants=["politie-test", "nobody-test", "hub-test"])
    reply = await wire.signed(network.keys["zvh-test"], "POST", "/api/v1/cases", body)
    problem = assert_problem(reply, 400, "invalid-request")
    assert locs(problem) == [["participants", 1], ["participants", 2]]
    assert "nobody-test" not in reply.text


async def test_an_invalid_registration_registers_nothing(network: Network, wire: Wire) -> None:
    zvh = network.keys["zvh-test"]
    bad = case_body(participants=["nobody-test"])
    assert_problem(await wire.signed(zvh, "POST", "/api/v1/cases", bad), 400, "invalid-request")
    assert_ok(await wire.signed(zvh, "POST", "/api/v1/cases", case_body()), 201)


@pytest.mark.parametrize(
    ("target", "body", "loc"),
    [
        (
            "/api/v1/dat-requests",
            {"case_ref": CASE, "subject_ref": "S1", "envelopes": []},
            ["envelopes"],
        ),
        (
            "/api/v1/dat-requests",
            {"case_ref": CASE, "subject_ref": "S1", "envelopes": [MARKER]},
            ["envelopes", 0],
        ),
        ("/api/v1/cases/C-1/participants", {"org": f"{MARKER}!"}, ["org"]),
        ("/api/v1/cases/C-1/close", {"reason": MARKER}, ["reason"]),
        ("/api/v1/inbox/1/ack", {"all": MARKER}, ["all"]),
        ("/api/v1/inbox/ack", {"message_ids": [0, MARKER]}, ["message_ids", 0]),
        ("/api/v1/inbox/ack", {"message_ids": []}, ["message_ids"]),
        (
            "/api/v1/exchanges/00000000-0000-4000-8000-000000000000/answers",
            {"decision": MARKER},
            ["decision"],
        ),
    ],
    ids=[
        "dat-no-envelopes",
        "dat-envelope-not-object",
        "participant-bad-org",
        "close-extra-field",
        "ack-extra-field",
        "batch-ack-bad-id",
        "batch-ack-empty",
        "answer-bad-decision",
    ],
)
async def test_other_endpoints_validate_their_bodies(
    network: Network, wire: Wire, target: str, body: dict[str, Any], loc: list[str | int]
) -> None:
    await open_case(network)
    reply = await wire.signed(network.keys["zvh-test"], "POST", target, body)
    problem = assert_problem(reply, 400, "invalid-request")
    assert loc in locs(problem)
    assert MARKER not in reply.text


@pytest.mark.parametrize(
    ("query", "name"),
    [("wait=abc", "wait"), ("wait=999", "wait"), ("limit=0", "limit"), ("limit=-1", "limit")],
)
async def test_bad_inbox_query_is_a_400(
    network: Network, wire: Wire, query: str, name: str
) -> None:
    reply = await wire.signed(network.keys["politie-test"], "GET", f"/api/v1/inbox?{query}")
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["query", name]]


async def test_non_ascii_digit_in_inbox_query_is_a_400(network: Network, wire: Wire) -> None:
    reply = await wire.signed(network.keys["politie-test"], "GET", "/api/v1/inbox?wait=%C2%B2")
    assert locs(assert_problem(reply, 400, "invalid-request")) == [["query", "wait"]]


async def test_non_numeric_message_id_is_not_found(network: Network, wire: Wire) -> None:
    reply = await wire.signed(network.keys["politie-test"], "POST", "/api/v1/inbox/abc/ack", {})
    assert_problem(reply, 404, "not-found")


async def test_non_ascii_digit_message_id_is_not_found(network: Network, wire: Wire) -> None:
    target = "/api/v1/inbox/%C2%B2/ack"
    reply = await wire.signed(network.keys["politie-test"], "POST", target, {})
    assert_problem(reply, 404, "not-found")


async def test_unknown_signed_route_is_a_404_problem(network: Network, wire: Wire) -> None:
    reply = await wire.signed(network.keys["politie-test"], "GET", "/api/v1/nothing-here")
    assert_problem(reply, 404, "not-found")


async def test_unsigned_unknown_api_route_is_a_401_not_a_404(network: Network, wire: Wire) -> None:
    """Authentication comes first: an unsigned caller cannot map the API."""
    assert_problem(await wire.send("GET", "/api/v1/nothing-here"), 401, "unauthenticated")


async def test_wrong_method_is_a_405_problem(network: Network, wire: Wire) -> None:
    reply = await wire.signed(network.keys["politie-test"], "GET", "/api/v1/cases")
    assert_problem(reply, 405, "method-not-allowed")
