"""Issue 8 with real processes: secure case messages with an attachment through the
adapters (webhook and file drop), and the referral form over plain HTTP: the CSRF
checks, a double submit, the logs (acceptance 4 in a browser is
tests/browser/test_referral_form.py).

The police adapter serves the form; a professional refers a person; the ZVH's
adapter delivers the referral to the ZVH's (fake) case system, which must receive
exactly the entered fields.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.adapters.support import (
    AdapterProcess,
    FakeSystem,
    LocalClient,
    answers_nothing,
    file_sha256,
    init_adapter,
    read_json,
    set_config,
    wait_until,
)
from tests.conftest import BSN, NAME, synthetic_pid
from tests.e2e.hubproc import HubProcess, Processes, create_hub

pytestmark = pytest.mark.e2e

HUB = "hub-messages"
ZVH = "zvh-messages"
POLICE = "politie-messages"
GGZ = "ggz-messages"
PARTNERS = ((ZVH, "zvh", "bestuur"), (POLICE, "partner", "straf"), (GGZ, "partner", "zorg"))
CASE = "ZVH-MSG-0001"
WRONG_BSN = BSN[:-1] + str((int(BSN[-1]) + 1) % 10)  # one digit off: fails the 11-test


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe=True: keep cookies for 127.0.0.1 (a browser does too).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


def _hidden(page: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert m is not None, f"no hidden {name}"
    return html.unescape(m.group(1))


def _form(page: str, **fields: str) -> dict[str, str]:
    return {"csrf": _hidden(page, "csrf"), "inzending": _hidden(page, "inzending"), **fields}


FILLED = {
    "naam": NAME,
    "bsn": WRONG_BSN,
    "geboortedatum": "03-02-1980",
    "straat": "Voorbeeldstraat 12",
    "postcode": "3011 AB",
    "woonplaats": "Rotterdam",
    "reden": "Zorgen over escalerend geweld in het gezin; meerdere meldingen.",
    "doel": "Gezamenlijk plan van aanpak met zorg en veiligheid.",
    "geinformeerd": "nee",
    "waarom_niet": "Informeren vergroot het risico voor de partner.",
    "melder_naam": "J. de Vries, wijkagent",
    "melder_telefoon": "0900-8844",
}


async def test_messages_with_attachments_and_the_referral_form(
    tmp_path: Path, procs: Processes, session: aiohttp.ClientSession
) -> None:
    setup = create_hub(tmp_path, HUB, PARTNERS)
    HubProcess(setup, procs).start()
    case_system = FakeSystem("zvh case system", answers_nothing)
    police_system = FakeSystem("police", answers_nothing)
    await case_system.start()
    await police_system.start()
    try:
        zvh = init_adapter(tmp_path, setup, ZVH, webhook_url=case_system.url)
        police = init_adapter(tmp_path, setup, POLICE, webhook_url=police_system.url, form=True)
        set_config(police, r"^\[form\]", '[form]\norganisation_name = "Politie Eenheid Test"')
        ggz = init_adapter(tmp_path, setup, GGZ, filedrop=True)
        police_proc = AdapterProcess(police, procs)
        for a in (zvh, ggz):
            AdapterProcess(a, procs).start()
        police_proc.start()
        clients = {a.org: LocalClient(a, session) for a in (zvh, police, ggz)}
        for client in clients.values():
            await client.ok("/local/v1/accessions", {})
        await clients[ZVH].ok(
            "/local/v1/cases",
            {
                "case_ref": CASE,
                "theme": "huiselijk-geweld",
                "subjects": [{"subject_ref": "S1", "pid": synthetic_pid()}],
                "participants": [POLICE, GGZ],
            },
        )

        # -- a case message with an attachment, from the police to the ZVH and the GGZ
        content = os.urandom(3 * 1024 * 1024 + 17)
        digest = hashlib.sha256(content).hexdigest()
        (police.dir / "outgoing").mkdir(exist_ok=True)
        (police.dir / "outgoing" / "pv-1182.pdf").write_bytes(content)
        message: dict[str, Any] = {
            "case_ref": CASE,
            "recipients": [ZVH, GGZ],
            "subject_ref": "S1",
            "body": {"tekst": "Proces-verbaal van de melding van gisteren, zie bijlage."},
            "attachments": [
                {"path": "pv-1182.pdf", "media_type": "application/pdf", "filename": "pv-1182.pdf"}
            ],
        }
        sent = await clients[POLICE].ok("/local/v1/messages", message)
        # A path outside the attachment folder is refused (the key file, for example).
        escape = {
            **message,
            "attachments": [{**message["attachments"][0], "path": "../../partner-keys/x.json"}],
        }
        status, problem, _ = await clients[POLICE].post("/local/v1/messages", escape)
        assert status == 400
        assert problem["errors"][0]["loc"] == ["attachments", 0, "path"]

        await case_system.wait_for(lambda r: any(i["kind"] == "message" for _, i in r))
        item = next(i for _, i in case_system.received if i["kind"] == "message")
        assert item["from"] == POLICE
        assert item["exchange_id"] == sent["exchange_id"]
        assert item["body"]["tekst"] == message["body"]["tekst"]
        [att] = item["body"]["attachments"]
        assert (att["filename"], att["media_type"], att["size"]) == (
            "pv-1182.pdf",
            "application/pdf",
            len(content),
        )
        assert "key" not in att
        assert file_sha256(Path(att["path"])) == digest == att["sha256"]

        assert ggz.filedrop is not None
        out = ggz.filedrop / "out"
        await wait_until(lambda: any(out.glob("*-message.json")), what="GGZ message file")
        [written] = list(out.glob("*-message.json"))
        ggz_item = read_json(written)
        ggz_file = Path(ggz_item["body"]["attachments"][0]["path"])
        assert ggz_file.is_relative_to(out)
        assert file_sha256(ggz_file) == digest

        # -- the referral form, served by the police adapter
        form_url = police.url + "/aanmelden"
        async with session.post(form_url, data={"naam": "x"}) as resp:
            assert resp.status == 403  # no CSRF token, no cookie
        async with session.get(form_url) as resp:
            assert resp.status == 200
            page = await resp.text()
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert "Aanmelden bij het Zorg- en Veiligheidshuis" in page
        assert "Politie Eenheid Test" in page
        assert f'value="{GGZ}"' in page
        # A token that belongs to another cookie is refused too.
        jar = aiohttp.CookieJar(unsafe=True)
        async with (
            aiohttp.ClientSession(cookie_jar=jar) as other,
            other.post(form_url, data=_form(page, **FILLED)) as resp,
        ):
            assert resp.status == 403
            assert "Formulier verlopen" in await resp.text()
        # The wrong BSN: a Dutch message, nothing sent.
        data = _form(page, **FILLED)
        async with session.post(form_url, data={**data, "partners": GGZ}) as resp:
            assert resp.status == 400
            page = await resp.text()
        assert "Dit BSN is ongeldig: het voldoet niet aan de elfproef." in page
        assert 'id="fout-bsn"' in page
        # The entered values stay in the form, and nothing went out.
        assert f'value="{WRONG_BSN}"' in page
        assert not any(i["kind"] == "referral" for _, i in case_system.received)
        # Corrected and sent (twice, as a double click would: one referral).
        fixed = {**_form(page, **{**FILLED, "bsn": BSN}), "partners": GGZ}
        for _ in range(2):
            async with session.post(form_url, data=fixed) as resp:
                assert resp.status == 200, await resp.text()
                done = await resp.text()
            assert "Aanmelding verzonden" in done
        await case_system.wait_for(lambda r: any(i["kind"] == "referral" for _, i in r))
        referrals = [i for _, i in case_system.received if i["kind"] == "referral"]
        assert referrals[0]["from"] == POLICE
        assert referrals[0]["body"] == {
            "soort": "aanmelding",
            "persoon": {
                "naam": NAME,
                "bsn": BSN,
                "geboortedatum": "1980-02-03",
                "adres": {
                    "straat": "Voorbeeldstraat 12",
                    "postcode": "3011 AB",
                    "woonplaats": "Rotterdam",
                },
            },
            "reden": FILLED["reden"],
            "doel": FILLED["doel"],
            "partners": [GGZ],
            "geinformeerd": False,
            "waarom_niet_geinformeerd": FILLED["waarom_niet"],
            "melder": {"naam": FILLED["melder_naam"], "telefoon": FILLED["melder_telefoon"]},
        }
        assert referrals[0]["exchange_id"] in done
        police_proc.stop()
        await wait_until(lambda: len(referrals) == 1, what="one referral")
        assert len([i for _, i in case_system.received if i["kind"] == "referral"]) == 1
        # No personal data in the police adapter's logs.
        logs = police_proc.stdout.read_text() + police_proc.stderr.read_text()
        for secret in (BSN, WRONG_BSN, NAME, "Voorbeeldstraat", "escalerend"):
            assert secret not in logs, secret
        assert '"route": "/aanmelden"' in logs
    finally:
        await case_system.stop()
        await police_system.stop()
