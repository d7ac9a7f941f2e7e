"""The dat round trip with every party in its own OS process, and the hub's privacy.

The hub is created with the CLI (`init-hub`, `keys generate`, `partner add`) and run
with `python -m gateway serve`; the ZVH and two partners are `partner_proc.py`
processes using the client library with real keys over loopback. Afterwards the
hub's files and logs are searched, byte by byte, for the person's identifiers.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIRTH, BSN, NAME, synthetic_pid
from tests.e2e.hubproc import (
    HubProcess,
    HubSetup,
    Processes,
    Started,
    create_hub,
    iter_files,
    result_of,
    spawn_script,
    wait_ready,
)

pytestmark = pytest.mark.e2e

PARTNER_SCRIPT = Path(__file__).with_name("partner_proc.py")
HUB_ORG = "hub-e2e"
ZVH = "zvh-e2e"
POLICE = "politie-e2e"
GGZ = "ggz-e2e"
PARTNERS = ((ZVH, "zvh", "bestuur"), (POLICE, "partner", "straf"), (GGZ, "partner", "zorg"))
CASE_REF = "ZVH-E2E-0001"
BIRTH_DATE = f"{BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}"  # as a person record writes it
PERSON = {"bsn": BSN, "name": NAME, "birth_date": BIRTH_DATE}
DECISIONS = {POLICE: "known", GGZ: "not-known"}
CONTACTS = {
    POLICE: "wijkagent team Noord-Oost, 0900-8844 toestel 1182",
    GGZ: "crisisdienst regio Zuid, 0800-7766 toestel 2291",
}
PROCESS_TIMEOUT_S = 40.0


def spawn_partner(
    procs: Processes, setup: HubSetup, out_dir: Path, org: str, spec: dict[str, Any]
) -> Started:
    return spawn_script(procs, PARTNER_SCRIPT, setup, out_dir, org=org, spec=spec, timeout_s=25)


def needles() -> dict[str, bytes]:
    """What identifies the person (and what the partners said in confidence)."""
    return {
        "bsn": BSN.encode(),
        "name": NAME.encode(),
        "surname": NAME.split()[-1].encode(),
        "birth date": BIRTH_DATE.encode(),
        "birth date (compact)": BIRTH.encode(),
        **{f"contact of {org}": c.encode() for org, c in CONTACTS.items()},
    }


def found_in(blobs: dict[str, bytes]) -> list[str]:
    """Which needles occur, case-insensitively, in which blob."""
    hits = []
    for where, data in blobs.items():
        lowered = data.lower()
        hits += [f"{what} in {where}" for what, n in needles().items() if n.lower() in lowered]
    return hits


def test_dat_round_trip_between_processes(tmp_path: Path, procs: Processes) -> None:
    setup = create_hub(tmp_path, HUB_ORG, PARTNERS)
    hub = HubProcess(setup, procs)
    hub.start()

    out_dir = tmp_path / "partners-out"
    out_dir.mkdir()
    # The responders sign their accessions and poll; the ZVH then registers the case
    # and asks both.
    started = {}
    for org, decision in DECISIONS.items():
        spec = {"role": "responder", "decision": decision, "contact": CONTACTS[org]}
        started[org] = spawn_partner(procs, setup, out_dir, org, spec)
    for org in DECISIONS:
        wait_ready(started[org], PROCESS_TIMEOUT_S)
    started[ZVH] = spawn_partner(
        procs,
        setup,
        out_dir,
        ZVH,
        {
            "role": "zvh",
            "case_ref": CASE_REF,
            "subject_ref": "S1",
            "pid": synthetic_pid(),
            "recipients": sorted(DECISIONS),
            "person": PERSON,
        },
    )
    results = {org: result_of(s, PROCESS_TIMEOUT_S) for org, s in started.items()}

    # The ZVH got both answers, with the contact routes sealed by each partner.
    zvh = results[ZVH]
    assert zvh["delivered"] == sorted(DECISIONS)
    assert zvh["denied"] == []
    assert zvh["answers"] == {
        org: {"decision": DECISIONS[org], "body": {"contact": CONTACTS[org]}} for org in DECISIONS
    }
    assert zvh["inbox_empty_after_ack"] is True
    # Each partner opened the request and saw the person (so the search below can fail).
    for org in DECISIONS:
        r = results[org]
        assert r["exchange_id"] == zvh["exchange_id"]
        assert (r["from"], r["case_ref"], r["subject_ref"]) == (ZVH, CASE_REF, "S1")
        assert r["seen"] == PERSON
        assert r["inbox_empty_after_ack"] is True
    partner_outputs = {p.name: p.read_bytes() for p in out_dir.glob("*.stdout")}
    for org in DECISIONS:
        assert {"bsn", "name", "birth date"} <= {
            h.split(" in ")[0] for h in found_in({org: partner_outputs[f"{org}.stdout"]})
        }

    assert hub.proc is not None
    assert hub.proc.poll() is None, "the hub died during the run"
    live = {f"live {p.name}": p.read_bytes() for p in setup.database_files()}

    # serve exits 0 within 10 s of SIGTERM, through its graceful shutdown.
    t0 = time.monotonic()
    assert hub.stop(signal.SIGTERM, timeout_s=10.0) == 0
    assert time.monotonic() - t0 < 10.0
    log_lines = [
        json.loads(line)
        for line in hub.stderr.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert {"hub ready", "hub stopped"} <= {entry["msg"] for entry in log_lines}

    # Privacy: nothing that identifies the person reaches the hub's disk or logs.
    hub_files = {f"{p.relative_to(tmp_path)}": p.read_bytes() for p in iter_files(setup.hub_dir)}
    logs = {p.name: p.read_bytes() for p in (hub.stdout, hub.stderr)}
    assert any(k.endswith("hub.sqlite3") for k in hub_files)
    assert found_in({**live, **hub_files, **logs}) == []
    # ... while the search does see what the hub may store (it reads real content).
    database = setup.database.read_bytes() + b"".join(live.values())
    for present in (CASE_REF, ZVH, POLICE, GGZ, "dat-request", "dat-answer", zvh["exchange_id"]):
        assert present.encode() in database, present

    # The ledger holds the steps in order, each at the index its actor was told.
    with contextlib.closing(sqlite3.connect(f"file:{setup.database}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT idx, type, body FROM ledger ORDER BY idx").fetchall()
    assert [r[0] for r in rows] == list(range(len(rows)))
    types = [r[1] for r in rows]
    assert types[0] == "hub-initialised"
    assert types.count("org-registered") == len(PARTNERS)
    assert types.count("protocol-published") == 1
    accessions = [r for r in rows if r[1] == "accession"]
    assert sorted(json.loads(r[2])["org"] for r in accessions) == sorted(p[0] for p in PARTNERS)
    assert {r[0] for r in accessions} == {
        results[org]["accession"]["ledger"][0]["index"] for org, _, _ in PARTNERS
    }
    steps = [r for r in rows if r[1] in ("case-registered", "dat-request", "dat-answer")]
    assert [r[1] for r in steps] == ["case-registered", "dat-request", "dat-answer", "dat-answer"]
    assert steps[0][0] == zvh["case_ledger"][0]["index"]
    assert steps[1][0] == zvh["request_ledger"][0]["index"]
    assert json.loads(steps[1][2])["exchange_id"] == zvh["exchange_id"]
    answers = {json.loads(r[2])["from"]: (r[0], json.loads(r[2])) for r in steps[2:]}
    for org, decision in DECISIONS.items():
        index, body = answers[org]
        assert index == results[org]["answer_ledger"][0]["index"]
        assert (body["exchange_id"], body["decision"]) == (zvh["exchange_id"], decision)
