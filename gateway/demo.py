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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.adapters.client import HubClient, Received
from gateway.clock import SystemClock
from gateway.config import load_settings
from gateway.crypto.encoding import b64u_encode
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import derive_key_pair, evaluate, pid_input
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


def _responder(client: HubClient) -> Callable[[Received], Any]:
    org = client.keys.org

    async def handle(msg: Received) -> None:
        if msg.kind != "dat-request" or msg.body is None:
            return
        who = msg.body.get("name", "?")
        if org in KNOWN_BY:
            _say(org, f"opened the dat-request: looks up {who} ... known")
            await client.answer(msg, "known", {"contact": KNOWN_BY[org]})
        else:
            _say(org, f"opened the dat-request: looks up {who} ... not known")
            await client.answer(msg, "not-known")

    return handle


async def play_scenario(url: str, keys: dict[str, OrgKeys], stop: asyncio.Event) -> None:
    clients = {org: HubClient(url, k) for org, k in keys.items()}
    loops = [
        asyncio.create_task(clients[o].run_inbox(_responder(clients[o]), stop=stop, wait=5))
        for o in ("politie-demo", "veilig-thuis-demo", "ggz-demo")
    ]
    zvh = clients["zvh-demo"]
    try:
        case_ref = "ZVH-DEMO-0001"
        pid = demo_pid(SUBJECT["bsn"], SUBJECT["birth_date"])
        print("\nScenario: one case, one dat round trip\n", flush=True)
        res = await zvh.register_case(
            case_ref,
            "huiselijk-geweld",
            [("S1", pid)],
            ["politie-demo", "veilig-thuis-demo", "ggz-demo", "woonstichting-demo"],
        )
        _say(
            "zvh-demo",
            f"registered case {case_ref} (theme huiselijk-geweld), "
            f"ledger #{res['ledger'][0]['index']}",
        )
        res = await zvh.dat_request(
            case_ref,
            "S1",
            ["politie-demo", "veilig-thuis-demo", "ggz-demo", "woonstichting-demo"],
            SUBJECT,
        )
        _say(
            "zvh-demo",
            f"dat-request {res['exchange_id'][:8]}: do you know subject S1? "
            "(name, BSN and birth date sealed per recipient)",
        )
        _say(
            "hub",
            f"saw: case {case_ref}, subject S1, {len(res['delivered'])} sealed envelopes "
            f"-> delivered to {', '.join(res['delivered'])}",
        )
        for d in res["denied"]:
            _say("hub", f"denied {d['org']}: {d['code']} (recorded in the ledger)")
        answers: dict[str, Received] = {}
        while len(answers) < len(res["delivered"]):
            for msg in await zvh.fetch(wait=5):
                answers[msg.sender] = msg
                await zvh.ack([msg.message_id])
        for org, msg in sorted(answers.items()):
            contact = f", contact: {msg.body['contact']}" if msg.body else ""
            _say("zvh-demo", f"answer from {org}: {msg.decision}{contact}")
        print(
            "\nThe hub stored only metadata and SHA-256 hashes of the sealed envelopes; "
            "the name and BSN never left the partners.\n",
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
        f"zvh-gateway demo: hub {HUB_ORG} on {url} (metrics {url[:-4]}{base_port + 1}/metrics)",
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
