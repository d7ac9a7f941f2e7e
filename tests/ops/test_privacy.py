"""No metric label and no log line names a case, a subject or a person.

A hub process serves dat and wat round trips, denials, 401s and 404s whose paths and
query strings carry a case ref and a BSN; then every label value of its /metrics and
every line it logged are searched for the case refs, subject refs, the pid, the BSN,
the name, the birth date, the contact routes, the exchange ids and (in metrics only)
the request ids. The same search must find the organisation ids, so it can fail.
"""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.adapters.client import HubClient, HubError
from tests.conftest import BIRTH, BSN, NAME, synthetic_pid
from tests.e2e.hubproc import Processes
from tests.ops.support import (
    GGZ,
    POLICE,
    RECIPIENTS,
    ZVH,
    http_get,
    log_records,
    make_ops_hub,
    metric_samples,
    occurrences,
    open_case,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Distinctive, so that a hit cannot be a coincidence and a miss means something.
CASE_REF = "ZVHOPS-CASE-Q7X4K2"
OTHER_CASE = "ZVHOPS-NOSUCH-J3W8"
SUBJECT_REF = "SUBJ-OPS-K9M2P5"
BIRTH_DATE = f"{BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}"
PERSON = {"bsn": BSN, "name": NAME, "birth_date": BIRTH_DATE}
CONTACT = "wijkagent Oost-Lansingerland toestel 7741"
RELEASED = "Contact via casusregisseur Pietersz, 06-11223344"
BASIS = {
    "gdpr_art6": "e",
    "national_law": "Wet gegevensverwerking samenwerkingsverbanden art. 2.1",
    "secrecy_permission": "statutory-duty",
    "five_questions": {
        "purpose": "veiligheid van de betrokkene",
        "necessity": "zonder contactgegevens geen afstemming",
        "subsidiarity": "niet op een minder ingrijpende manier te verkrijgen",
        "proportionality": "alleen contactgegevens",
        "effectiveness": "maakt afstemming tussen hulpverleners mogelijk",
    },
}


def unsigned_error(url: str) -> urllib.error.HTTPError:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=5)
    return err.value


async def drain(client: HubClient) -> list[str]:
    messages = await client.fetch(wait=5)
    assert messages, f"{client.keys.org} got nothing"
    await client.ack([m.message_id for m in messages])
    return [m.exchange_id or "" for m in messages]


async def test_no_label_or_log_line_names_a_case_subject_or_person(
    tmp_path: Path, procs: Processes
) -> None:
    hub = make_ops_hub(tmp_path, procs)
    await open_case(hub, CASE_REF, SUBJECT_REF)
    exchange_ids: set[str] = set()
    async with (
        hub.client(ZVH) as zvh,
        hub.client(POLICE) as police,
        hub.client(GGZ) as ggz,
        hub.client("vt-test") as vt,
    ):
        # dat: known by the police, not known by GGZ
        dat = await zvh.dat_request(CASE_REF, SUBJECT_REF, RECIPIENTS, PERSON)
        exchange_ids.add(dat["exchange_id"])
        assert dat["delivered"] == list(RECIPIENTS)
        (request,) = await police.fetch(wait=5)
        assert request.body == PERSON
        await police.answer(request, "known", {"contact": CONTACT})
        await police.ack([request.message_id])
        (request,) = await ggz.fetch(wait=5)
        await ggz.answer(request, "not-known")
        await ggz.ack([request.message_id])
        answers = await zvh.fetch(wait=5)
        while len(answers) < 2:
            answers += await zvh.fetch(wait=5)
        await zvh.ack([m.message_id for m in answers])

        # wat: the police releases contact details
        wat = await zvh.wat_request(
            CASE_REF,
            SUBJECT_REF,
            POLICE,
            categories=["contact"],
            purpose="afstemming hulpverlening",
            processing_activity="mda-plus-plus",
            legal_basis=BASIS,
            body={"vraag": f"contactgegevens van {NAME}", "bsn": BSN},
        )
        exchange_ids.add(wat["exchange_id"])
        (request,) = await police.fetch(wait=5)
        await police.answer(request, "release", {"contact": RELEASED})
        await police.ack([request.message_id])
        exchange_ids.update(await drain(zvh))

        # denials and errors whose paths and query strings carry identifiers
        with pytest.raises(HubError) as denied:
            await vt.dat_request(CASE_REF, SUBJECT_REF, [POLICE], PERSON)
        assert denied.value.status == 403
        with pytest.raises(HubError) as missing:
            await zvh.close_case(OTHER_CASE)
        assert missing.value.status == 404
        with pytest.raises(HubError) as missing:
            await zvh.call("POST", f"/api/v1/exchanges/{OTHER_CASE}/answers", body={})
        assert missing.value.status in (400, 404)
    request_ids = set()
    for target in (
        f"/api/v1/inbox?case_ref={CASE_REF}&bsn={BSN}",  # unsigned: 401
        f"/api/v1/cases/{CASE_REF}/{SUBJECT_REF}?bsn={BSN}",  # no such route, unsigned: 401
    ):
        err = unsigned_error(hub.url + target)
        assert err.code == 401
        request_ids.add(err.headers["X-Request-Id"])
    status, headers, _ = http_get(hub.url + "/healthz")  # a probe: logged at debug only
    assert status == 200
    assert len(headers["X-Request-Id"]) == 32
    assert len(request_ids) == 2
    assert all(len(r) == 32 for r in request_ids), request_ids

    status, _, exposition = http_get(hub.metrics_url)
    assert status == 200
    samples = metric_samples(exposition)
    assert hub.proc.stop(signal.SIGTERM) == 0
    records = log_records(hub.proc.stderr)
    stdout = hub.proc.stdout.read_text(encoding="utf-8")

    needles = {
        "case ref": CASE_REF,
        "other case ref": OTHER_CASE,
        "subject ref": SUBJECT_REF,
        "pid": synthetic_pid(),
        "bsn": BSN,
        "name": NAME,
        "surname": NAME.split()[-1],
        "birth date": BIRTH_DATE,
        "birth date (compact)": BIRTH,
        "contact route": CONTACT,
        "released text": RELEASED,
        **{f"exchange id {x}": x for x in exchange_ids},
    }
    label_values = [v for _, labels, _ in samples for v in labels.values()]
    log_text = [line for line in hub.proc.stderr.read_text(encoding="utf-8").splitlines()]
    assert occurrences(needles, {"metric labels": label_values, "logs": [*log_text, stdout]}) == []
    assert occurrences({f"request id {r}": r for r in request_ids}, {"labels": label_values}) == []

    # The search sees what may be there: organisation ids and request ids.
    orgs = {org: org for org in (ZVH, POLICE, GGZ)}
    assert len(occurrences(orgs, {"labels": label_values})) == len(orgs)
    assert len(occurrences(orgs, {"logs": log_text})) == len(orgs)
    assert len(occurrences({r: r for r in request_ids}, {"logs": log_text})) == len(request_ids)

    # One access line per request, with the route template, never the path.
    access = [r for r in records if r["logger"] == "gateway.access"]
    assert {"method", "route", "status", "duration_ms", "org", "request_id"} <= set(access[0])
    routes = {r["route"] for r in access}
    assert {
        "/api/v1/dat-requests",
        "/api/v1/wat-requests",
        "/api/v1/exchanges/{exchange_id}/answers",
        "/api/v1/cases/{case_ref}/close",
        "/api/v1/inbox",
        "unmatched",
    } <= routes
    assert {r["status"] for r in access} >= {200, 201, 202, 401, 403, 404}
    assert {(r["route"], r["org"]) for r in access} >= {
        ("/api/v1/dat-requests", ZVH),
        ("/api/v1/exchanges/{exchange_id}/answers", POLICE),
    }
    assert all(r["org"] is None for r in access if r["status"] == 401)
    # Every line of a request carries that request's id: the 401's reason line too.
    reasons = [r for r in records if r["msg"] == "request not authenticated"]
    assert {r["request_id"] for r in reasons} == request_ids
    assert request_ids <= {r["request_id"] for r in access if r["status"] == 401}
    assert len({r["request_id"] for r in access}) == len(access)
