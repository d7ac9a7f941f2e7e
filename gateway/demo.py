"""`zvh-gateway demo`: a small regional network on loopback, with synthetic data.

Writes everything under DIR (PROTOCOL §8): the hub's config, keys and database,
the demo partners' key files and `network.json`; uses ports P (hub API) and P+1
(hub metrics) of its P..P+99 range. With the scenario it then plays one case: the
ZVH registers it, asks the other participants whether they know the subject, and
prints what each party did and what the hub could see (metadata only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.adapters.client import HubClient, HubError, Received
from gateway.clock import SystemClock
from gateway.config import load_settings
from gateway.crypto.encoding import b64u_encode
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import derive_key_pair, evaluate, pid_input
from gateway.policy.rules import load_policy
from gateway.services import admin
from gateway.web.hub_app import HubServer, build_hub

HUB_ORG = "zvh-demo-hub"
MARKER = ".zvh-gateway-demo"


@dataclass(frozen=True, slots=True)
class DemoPartner:
    org: str
    role: str
    domain: str
    name: str


PARTNERS = (
    DemoPartner("zvh-demo", "zvh", "bestuur", "Zorg- en Veiligheidshuis Demo"),
    DemoPartner("politie-demo", "partner", "straf", "Politie eenheid Demo"),
    DemoPartner("veilig-thuis-demo", "partner", "zorg", "Veilig Thuis Demo"),
    DemoPartner("ggz-demo", "partner", "zorg", "GGZ Demo"),
    DemoPartner("woonstichting-demo", "incidental", "sociaal", "Woonstichting Demo"),
)

# Synthetic person: the BSN passes the 11-test but belongs to nobody.
SUBJECT = {"bsn": "230857103", "birth_date": "1980-02-03", "name": "Barend Testmans"}
# Which demo partners "know" the subject in their own (imaginary) records.
KNOWN_BY = {
    "politie-demo": "wijkagent team Noord, 0900-8844 (dienstnummer D-1182)",
    "veilig-thuis-demo": "casemanager, 0800-2000 (melding VT-2026-3317)",
}
# Demo stand-in for the national pseudonymiser (its own issue): same OPRF, a demo key.
DEMO_OPRF_SEED = bytes([0x5A]) * 32
PROTOCOL_TITLE = "Privacyprotocol Zorg- en Veiligheidshuis Demo"
PROTOCOL_TEXT = """Privacyprotocol Zorg- en Veiligheidshuis Demo (versie 1)

1. Doel: gegevens worden alleen gedeeld voor de persoonsgerichte aanpak van casussen
   die de procesregisseur van het Zorg- en Veiligheidshuis heeft aangemeld.
2. Eerst de dat-vraag (is de persoon bekend?), daarna alleen wat noodzakelijk is.
3. Iedere verstrekking vermeldt doel, grondslag en, zonder toestemming, de vijf vragen.
4. Incidentele deelnemers ondertekenen per casus een geheimhoudingsverklaring.
5. Gegevens worden niet langer bewaard dan noodzakelijk.
"""


def demo_pid(bsn: str, birth_date: str) -> str:
    sk, _ = derive_key_pair(DEMO_OPRF_SEED, b"zvh-gateway demo pseudonymiser")
    return evaluate(sk, pid_input(bsn, birth_date.replace("-", ""))).hex()


def prepare(directory: Path, base_port: int) -> dict[str, Any]:
    """Create the hub and the partners' keys under DIR and write network.json."""
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise SystemExit(
                f"{directory} is not empty and not a demo folder; choose another --dir"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("made by zvh-gateway demo; deleted on the next run\n")
    clock = SystemClock()
    paths = admin.init_hub(
        directory / "hub", HUB_ORG, clock, port=base_port, metrics_port=base_port + 1
    )
    settings = load_settings(paths.config)
    hub_keys = OrgKeys.load(paths.key_file)
    # The region publishes its privacy protocol; partners sign their own accessions.
    admin.publish_protocol(
        settings,
        clock,
        text=PROTOCOL_TEXT.encode(),
        title=PROTOCOL_TITLE,
        themes=list(load_policy(settings.node.policy_file).themes),
    )
    partners = []
    (directory / "partners").mkdir(mode=0o700)
    for p in PARTNERS:
        keys = OrgKeys.generate(p.org)
        key_file = directory / "partners" / f"{p.org}.key.json"
        keys.save(key_file)
        admin.add_partner(
            settings, clock, public=keys.public(), role=p.role, domain=p.domain, name=p.name
        )
        partners.append(
            {
                "org": p.org,
                "role": p.role,
                "domain": p.domain,
                "hub": HUB_ORG,
                "key_file": str(key_file),
                "signing_key": b64u_encode(keys.signing_key),
                "encryption_key": b64u_encode(keys.encryption_key),
            }
        )
    network = {
        "nodes": [
            {
                "org": HUB_ORG,
                "role": "hub",
                "url": f"http://127.0.0.1:{base_port}",
                "metrics_url": f"http://127.0.0.1:{base_port + 1}/metrics",
                "signing_key": b64u_encode(hub_keys.signing_key),
                "encryption_key": b64u_encode(hub_keys.encryption_key),
            }
        ],
        "partners": partners,
    }
    (directory / "network.json").write_text(json.dumps(network, indent=2) + "\n")
    return {"config": paths.config, "network": network, "network_file": directory / "network.json"}


def _say(who: str, text: str) -> None:
    print(f"  {who:>20} | {text}", flush=True)


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def _step(title: str) -> None:
    print(f"\n{title}", flush=True)


HOLDER_DECISIONS = {
    # The police releases what it may; Veilig Thuis refuses a care question.
    "politie-demo": ("release", None),
    "veilig-thuis-demo": ("refuse", "client-objection-upheld"),
}
COMPLETE_BASIS = {
    "gdpr_art6": "e",
    "gdpr_special": "art10",
    "national_law": "Wet gegevensverwerking door samenwerkingsverbanden (WGS), art. 2.17",
    "secrecy_permission": "statutory-duty",
    "five_questions": {
        "purpose": "Veiligheidsplan opstellen voor de betrokkene en haar kinderen",
        "necessity": "Zonder het risicobeeld kan het plan niet worden gemaakt",
        "subsidiarity": "De betrokkene weigert zelf informatie te geven",
        "proportionality": "Alleen het actuele risico, geen volledig dossier",
        "effectiveness": "Het risicobeeld bepaalt de maatregelen in het plan",
    },
}


def _responder(client: HubClient) -> Callable[[Received], Any]:
    org = client.keys.org

    async def handle(msg: Received) -> None:
        if msg.body is None:
            return
        if msg.kind == "dat-request":
            who = msg.body.get("name", "?")
            if org in KNOWN_BY:
                _say(org, f"opened the dat-request: looks up {who} ... known")
                await client.answer(msg, "known", {"contact": KNOWN_BY[org]})
            else:
                _say(org, f"opened the dat-request: looks up {who} ... not known")
                await client.answer(msg, "not-known")
        elif msg.kind == "wat-request":
            wat = msg.wat or {}
            cats = ", ".join(wat.get("categories", []))
            decision, reason = HOLDER_DECISIONS.get(org, ("refuse", "other"))
            law = wat.get("legal_basis", {}).get("national_law", "?")
            _say(org, f"wat-request for [{cats}], basis {law}")
            if decision == "release":
                _say(org, "decides: release (sealed to the requester)")
                await client.answer(
                    msg,
                    "release",
                    {
                        "veiligheidsrisico": "hoog: recente meldingen",
                        "justitiele-gegevens": "1 lopende zaak",
                    },
                )
            else:
                _say(org, f"decides: refuse, reason {reason}")
                await client.answer(
                    msg, "refuse", {"toelichting": "cliënt maakt bezwaar"}, reason_code=reason
                )

    return handle


async def _answers(client: HubClient, count: int) -> list[Received]:
    got: list[Received] = []
    while len(got) < count:
        for msg in await client.fetch(wait=5):
            # The hub's notifications (a dat match, a case closed) are not answers.
            if msg.kind != "notification":
                got.append(msg)
            await client.ack([msg.message_id])
    return got


async def _wat_steps(zvh: HubClient, case_ref: str) -> None:
    _step("5. wat: 'what may you share, for which purpose, on which legal basis?'")
    res = await zvh.wat_request(
        case_ref,
        "S1",
        "politie-demo",
        categories=["veiligheidsrisico", "justitiele-gegevens"],
        purpose="Veiligheidsplan",
        processing_activity="Casusregie huiselijk geweld",
        legal_basis=COMPLETE_BASIS,
        body={"vraag": "actueel risicobeeld en lopende zaken"},
    )
    _say(
        "hub",
        f"policy allowed it ({res['rule']}); decision due {_when(res['deadline_ms'])}; "
        f"ledger #{res['ledger'][0]['index']}",
    )
    [msg] = await _answers(zvh, 1)
    _say("zvh-demo", f"{msg.sender} decided {msg.decision}: {msg.body}")

    _step("6. A wat-request without a complete legal basis is refused by the policy")
    incomplete = {
        "gdpr_art6": "e",
        "national_law": "WGS",
        "secrecy_permission": "conflict-of-duties",
    }
    try:
        await zvh.wat_request(
            case_ref,
            "S1",
            "veilig-thuis-demo",
            categories=["zorg-gezondheid"],
            purpose="Zorgbeeld",
            processing_activity="Casusregie huiselijk geweld",
            legal_basis=incomplete,
            body={"vraag": "welke zorg loopt er?"},
        )
    except HubError as exc:
        _say(
            "hub",
            f"refused: {exc.code}: {exc.problem.get('detail')} "
            f"(ledger #{exc.problem['ledger'][0]['index']})",
        )

    _step("7. A wat-request the policy allows, refused by the holder with a reason")
    res = await zvh.wat_request(
        case_ref,
        "S1",
        "veilig-thuis-demo",
        categories=["hulpverlening"],
        purpose="Afstemmen hulpverlening",
        processing_activity="Casusregie huiselijk geweld",
        legal_basis={
            **COMPLETE_BASIS,
            "gdpr_special": None,
            "secrecy_permission": "consent",
            "consent_ref": "toestemming vastgelegd 2026-11-20",
        },
        body={"vraag": "welke hulp is ingezet?"},
    )
    [msg] = await _answers(zvh, 1)
    _say("zvh-demo", f"{msg.sender} decided {msg.decision}, reason {msg.reason_code}")


async def play_scenario(url: str, keys: dict[str, OrgKeys], stop: asyncio.Event) -> None:
    clients = {org: HubClient(url, k) for org, k in keys.items()}
    agents = ("politie-demo", "veilig-thuis-demo", "ggz-demo", "woonstichting-demo")
    loops = [
        asyncio.create_task(clients[o].run_inbox(_responder(clients[o]), stop=stop, wait=5))
        for o in agents
    ]
    zvh = clients["zvh-demo"]
    housing = clients["woonstichting-demo"]
    case_ref = "ZVH-DEMO-0001"
    try:
        _step("1. Membership: the region's partners sign the privacy protocol")
        for org in ("zvh-demo", "politie-demo", "veilig-thuis-demo", "ggz-demo"):
            res = await clients[org].accede()
            _say(
                org,
                f"signed the accession to {res['protocol_id']}, "
                f"ledger #{res['ledger'][0]['index']}",
            )

        _step("2. Case: the ZVH registers a case (the subject by pseudonym only)")
        pid = demo_pid(SUBJECT["bsn"], SUBJECT["birth_date"])
        res = await zvh.register_case(case_ref, "huiselijk-geweld", [("S1", pid)], list(agents))
        _say(
            "zvh-demo",
            f"registered {case_ref} (huiselijk-geweld), participants "
            f"{', '.join(agents)}; ledger #{res['ledger'][0]['index']}",
        )

        _step("3. dat: 'do you know this person?' (name, BSN, birth date sealed per recipient)")
        res = await zvh.dat_request(case_ref, "S1", list(agents), SUBJECT)
        _say(
            "hub",
            f"saw case {case_ref}, subject S1, {len(res['delivered'])} sealed envelopes "
            f"-> {', '.join(res['delivered'])}",
        )
        for d in res["denied"]:
            _say("hub", f"denied {d['org']}: {d['code']} (recorded in the ledger)")
        for msg in sorted(await _answers(zvh, len(res["delivered"])), key=lambda m: m.sender):
            contact = f", contact: {msg.body['contact']}" if msg.body else ""
            _say("zvh-demo", f"answer from {msg.sender}: {msg.decision}{contact}")

        _step("4. The incidental partner signs its geheimhoudingsverklaring, then takes part")
        text = await housing.declaration_text(case_ref)
        _say(
            "woonstichting-demo",
            f"read the declaration text ({len(text)} bytes, "
            f"first line: {text.decode().splitlines()[0]})",
        )
        now = SystemClock().now_ms()
        res = await housing.declare(
            case_ref,
            signer_name="J. de Vries",
            signer_role="teamleider",
            valid_from_ms=now - 60_000,
            valid_until_ms=now + 90 * 86_400_000,
        )
        _say(
            "woonstichting-demo", f"signed it (valid 90 days), ledger #{res['ledger'][0]['index']}"
        )
        res = await zvh.dat_request(case_ref, "S1", ["woonstichting-demo"], SUBJECT)
        _say("hub", f"now delivered to {', '.join(res['delivered'])}")
        for msg in await _answers(zvh, 1):
            _say("zvh-demo", f"answer from {msg.sender}: {msg.decision}")

        await _wat_steps(zvh, case_ref)
        print(
            "\nThe hub stored metadata, legal bases and SHA-256 hashes of the sealed envelopes;"
            " the name and BSN never left the partners. Every step above is a ledger entry:"
            f" {url}/api/v1/ledger/checkpoint\n",
            flush=True,
        )
    finally:
        await asyncio.sleep(0.3)
        for t in loops:
            t.cancel()
        for t in loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for c in clients.values():
            await c.close()


async def run_demo(directory: Path, base_port: int, *, scenario: bool = True) -> int:
    prepared = prepare(directory, base_port)
    settings = load_settings(prepared["config"])
    server = HubServer(build_hub(settings))
    await server.start()
    url = f"http://127.0.0.1:{base_port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"zvh-gateway demo: hub {HUB_ORG} on {url} "
        f"(metrics http://127.0.0.1:{base_port + 1}/metrics)",
        flush=True,
    )
    print(f"network description: {prepared['network_file']}", flush=True)
    try:
        if scenario:
            keys = {p["org"]: OrgKeys.load(p["key_file"]) for p in prepared["network"]["partners"]}
            await play_scenario(url, keys, stop)
        print(f"Hub keeps serving on {url}. Press Ctrl-C to stop.", flush=True)
        await stop.wait()
    finally:
        await server.stop()
    print("demo stopped", flush=True)
    return 0
