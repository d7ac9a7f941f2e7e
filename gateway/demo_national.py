"""`zvh-gateway demo --national`: N regions, the pseudonymiser and the index on loopback.

Writes everything under DIR (PROTOCOL §8): the pseudonymiser (its OPRF key derived
from --oprf-seed/--oprf-info when given, so RFC 9497's vectors can be reproduced
through it), the index, and per region a hub with its ZVH, OM/ZSM and Veilig Thuis
organisations and a `[national]` section (contact routes of every hub, the pinned
canary); each hub is in the trust lists of both national services. Ports: P and P+1
pseudonymiser (API, metrics), P+2 and P+3 index, P+10+2i and P+11+2i hub i.

The scenario: the members sign their accessions; the ZVH of region 1 computes a
person's pid (blinded, through its hub) and registers a case; the OM/ZSM desk of
region 2 computes the same pid through its own hub and asks the national check,
which answers with region 1's hub and its contact route, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.adapters.client import HubClient, HubError
from gateway.clock import SystemClock
from gateway.config import load_settings
from gateway.crypto.encoding import b64u_encode
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf import pid_input
from gateway.crypto.oprf_key import OprfKey
from gateway.federation import admin as national_admin
from gateway.federation.admin import HubContact
from gateway.policy.rules import load_policy
from gateway.services import admin
from gateway.web.hub_app import HubServer, build_hub
from gateway.web.index_app import build_index, index_server
from gateway.web.node_app import NodeServer
from gateway.web.pseudonymiser_app import build_pseudonymiser, pseudonymiser_server

MARKER = ".zvh-gateway-demo"
PSEUDONYMISER_ORG = "pseudonymiser-nl"
INDEX_ORG = "index-nl"
# The published canary: a BSN from the range kept for tests (it passes the 11-test).
CANARY_INPUT = "999990019|19700101"
# Synthetic people: the BSNs pass the 11-test but belong to nobody.
SUBJECT = {"bsn": "230857103", "birth_date": "1980-02-03", "name": "Barend Testmans"}
STRANGER = {"bsn": "111222333", "birth_date": "1975-11-30", "name": "Cornelia Proefpersoon"}
REGIONS = (
    ("rotterdam", "Rotterdam-Rijnmond", "010"),
    ("amsterdam", "Amsterdam-Amstelland", "020"),
    ("haaglanden", "Haaglanden", "070"),
    ("utrecht", "Midden-Nederland", "030"),
    ("twente", "Twente", "053"),
    ("groningen", "Groningen", "050"),
    ("limburg-noord", "Limburg-Noord", "077"),
    ("brabant-no", "Brabant-Noordoost", "073"),
    ("zeeland", "Zeeland", "0118"),
    ("friesland", "Fryslan", "058"),
)
MAX_HUBS = 20
PROTOCOL_TEXT = """Privacyprotocol Zorg- en Veiligheidshuis {name} (versie 1)

1. Gegevens worden alleen gedeeld voor de persoonsgerichte aanpak van aangemelde casussen.
2. De landelijke bekendheidscheck werkt met pseudoniemen; een BSN verlaat de partner niet.
3. Gegevens worden niet langer bewaard dan noodzakelijk.
"""


@dataclass(frozen=True, slots=True)
class Region:
    index: int
    slug: str
    name: str
    phone: str

    @property
    def hub(self) -> str:
        return f"hub-{self.slug}"

    @property
    def zvh(self) -> str:
        return f"zvh-{self.slug}"

    @property
    def om(self) -> str:
        return f"om-zsm-{self.slug}"

    @property
    def vt(self) -> str:
        return f"veilig-thuis-{self.slug}"

    @property
    def contact(self) -> str:
        return f"Zorg- en Veiligheidshuis {self.name}, procesregie: {self.phone}-000 0000 (demo)"

    def partners(self) -> tuple[tuple[str, str, str, str], ...]:
        """(org, role, domain, name): the ZVH and two partners."""
        return (
            (self.zvh, "zvh", "bestuur", f"Zorg- en Veiligheidshuis {self.name}"),
            (self.om, "partner", "straf", f"OM ZSM-tafel {self.name}"),
            (self.vt, "partner", "zorg", f"Veilig Thuis {self.name}"),
        )


def regions(count: int) -> list[Region]:
    if not 1 <= count <= MAX_HUBS:
        raise SystemExit(f"--hubs must be 1..{MAX_HUBS}")
    out = []
    for i in range(count):
        slug, name, phone = (
            REGIONS[i] if i < len(REGIONS) else (f"regio-{i + 1}", f"Regio {i + 1}", "088")
        )
        out.append(Region(i, slug, name, phone))
    return out


def _fresh(directory: Path) -> Path:
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise SystemExit(
                f"{directory} is not empty and not a demo folder; choose another --dir"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("made by zvh-gateway demo; deleted on the next run\n")
    return directory


def prepare_national(
    directory: Path,
    base_port: int,
    *,
    hubs: int = 3,
    oprf_seed_hex: str | None = None,
    oprf_info: str | None = None,
    national: Mapping[str, Any] | None = None,
    port_of: Callable[[int], int] | None = None,
) -> dict[str, Any]:
    """Create every node's folder under DIR and write network.json; `national` overrides
    keyword arguments of the hubs' `[national]` sections (timeouts, leases), `port_of`
    maps a port's offset from `base_port` to the port (tests pick free ones)."""
    directory = _fresh(directory)
    ports = {off: base_port + off if port_of is None else port_of(off) for off in range(50)}
    clock = SystemClock()
    ps = national_admin.init_node(
        directory / "pseudonymiser",
        role="pseudonymiser",
        org=PSEUDONYMISER_ORG,
        clock=clock,
        port=ports[0],
        metrics_port=ports[1],
        oprf_seed_hex=oprf_seed_hex,
        oprf_info=oprf_info,
    )
    ix = national_admin.init_node(
        directory / "index",
        role="index",
        org=INDEX_ORG,
        clock=clock,
        port=ports[2],
        metrics_port=ports[3],
    )
    assert ps.oprf_key_file is not None
    bsn, _, birth = CANARY_INPUT.partition("|")
    canary_pid = OprfKey.load(ps.oprf_key_file).evaluate(pid_input(bsn, birth)).hex()
    ps_settings, ix_settings = load_settings(ps.config), load_settings(ix.config)
    chosen = regions(hubs)
    contacts = [HubContact(r.hub, r.contact) for r in chosen]
    nodes = [_node(PSEUDONYMISER_ORG, "pseudonymiser", ports[0], ports[1], ps.key_file)]
    nodes.append(_node(INDEX_ORG, "index", ports[2], ports[3], ix.key_file))
    partners: list[dict[str, Any]] = []
    hub_configs: dict[str, Path] = {}
    (directory / "partners").mkdir(mode=0o700)
    for region in chosen:
        port, metrics_port = ports[10 + 2 * region.index], ports[11 + 2 * region.index]
        paths = admin.init_hub(
            directory / region.hub, region.hub, clock, port=port, metrics_port=metrics_port
        )
        with paths.config.open("a", encoding="utf-8") as handle:
            handle.write(
                national_admin.render_national_section(
                    pseudonymiser_url=f"http://127.0.0.1:{ports[0]}",
                    index_url=f"http://127.0.0.1:{ports[2]}",
                    hubs=contacts,
                    canary_input=CANARY_INPUT,
                    canary_pid=canary_pid,
                    known_check_orgs=[region.zvh, region.om],
                    **(national or {}),
                )
            )
        settings = load_settings(paths.config)
        admin.publish_protocol(
            settings,
            clock,
            text=PROTOCOL_TEXT.format(name=region.name).encode(),
            title=f"Privacyprotocol ZVH {region.name}",
            themes=list(load_policy(settings.node.policy_file).themes),
        )
        hub_keys = OrgKeys.load(paths.key_file)
        for node_settings in (ps_settings, ix_settings):
            admin.add_partner(
                node_settings, clock, public=hub_keys.public(), role="hub", domain=None, name=None
            )
        for org, role, domain, name in region.partners():
            keys = OrgKeys.generate(org)
            key_file = directory / "partners" / f"{org}.key.json"
            keys.save(key_file)
            admin.add_partner(
                settings, clock, public=keys.public(), role=role, domain=domain, name=name
            )
            partners.append(
                {
                    "org": org,
                    "role": role,
                    "domain": domain,
                    "hub": region.hub,
                    "key_file": str(key_file),
                    "signing_key": b64u_encode(keys.signing_key),
                    "encryption_key": b64u_encode(keys.encryption_key),
                }
            )
        nodes.append(_node(region.hub, "hub", port, metrics_port, paths.key_file))
        hub_configs[region.hub] = paths.config
    network = {"nodes": nodes, "partners": partners}
    (directory / "network.json").write_text(json.dumps(network, indent=2) + "\n")
    return {
        "directory": directory,
        "network": network,
        "network_file": directory / "network.json",
        "pseudonymiser_config": ps.config,
        "index_config": ix.config,
        "hub_configs": hub_configs,
        "regions": chosen,
        "canary_pid": canary_pid,
    }


def _node(org: str, role: str, port: int, metrics_port: int, key_file: Path) -> dict[str, Any]:
    keys = OrgKeys.load(key_file)
    return {
        "org": org,
        "role": role,
        "url": f"http://127.0.0.1:{port}",
        "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics",
        "signing_key": b64u_encode(keys.signing_key),
        "encryption_key": b64u_encode(keys.encryption_key),
    }


def _say(who: str, text: str) -> None:
    print(f"  {who:>26} | {text}", flush=True)


def _step(title: str) -> None:
    print(f"\n{title}", flush=True)


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


async def play_national(prepared: dict[str, Any], clients: Mapping[str, HubClient]) -> None:
    chosen: list[Region] = prepared["regions"]
    first, second = chosen[0], chosen[1 if len(chosen) > 1 else 0]
    last = chosen[-1]

    _step("1. Membership: every region's members sign their region's privacy protocol")
    for region in chosen:
        for org, _, _, _ in region.partners():
            await clients[org].accede()
        _say(region.hub, f"accessions of {region.zvh}, {region.om}, {region.vt}")

    _step("2. A pseudonym: the ZVH blinds BSN + birth date; only the blinded element travels")
    zvh = clients[first.zvh]
    pid = await zvh.pseudonym(SUBJECT["bsn"], SUBJECT["birth_date"])
    _say(first.zvh, f"pid {pid[:16]}... (the BSN never left this process)")
    _say(first.hub, "forwarded one blinded group element, signed as the hub")
    _say(PSEUDONYMISER_ORG, "evaluated it: saw a random-looking element, no BSN, no pid")

    _step("3. Case: the ZVH registers a case; the hub registers the pid in the national index")
    case_ref = f"ZVH-{first.slug.upper()}-0001"
    res = await zvh.register_case(case_ref, "huiselijk-geweld", [("S1", pid)], [first.vt])
    _say(first.zvh, f"registered {case_ref}, ledger #{res['ledger'][0]['index']}")

    _step(f"4. The OM/ZSM desk of {second.name} asks the national check about a suspect")
    om = clients[second.om]
    same = await om.pseudonym(SUBJECT["bsn"], SUBJECT["birth_date"])
    _say(second.om, f"computed the pid through {second.hub}: {same[:16]}... (the same)")
    answer: dict[str, Any] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = await om.known_check(same, "zsm-advies")
        if any(m["hub"] == first.hub for m in answer["matches"]):
            break
        await asyncio.sleep(0.2)
    for match in answer["matches"]:
        _say(
            second.hub,
            f"known at {match['hub']} ({match['status']} since {_when(match['since_ms'])})",
        )
        _say("contact route", str(match["contact"]))
    if not answer["matches"]:
        _say(second.hub, f"no match (unreachable: {answer['unreachable']})")
    _say(second.hub, f"the check is ledger entry #{answer['ledger'][0]['index']} at {second.hub}")

    _step(f"5. The ZVH of {last.name} asks about someone who is in no case")
    other = clients[last.zvh]
    stranger = await other.pseudonym(STRANGER["bsn"], STRANGER["birth_date"])
    result = await other.known_check(stranger, "verward-gedrag")
    _say(last.zvh, f"matches: {result['matches']} (unreachable: {result['unreachable']})")

    _step("6. An organisation the policy does not allow gets 403, and that is recorded too")
    try:
        await clients[first.vt].known_check(same, "huiselijk-geweld")
    except HubError as exc:
        _say(first.vt, f"{exc.status} {exc.code} (ledger #{exc.problem['ledger'][0]['index']})")
    print(
        "\nNo node stored a BSN, a name or a birth date: the pseudonymiser saw blinded"
        " elements, the index pids and hubs, the hubs pids, purposes and hashes.\n",
        flush=True,
    )


async def run_national_demo(
    directory: Path,
    base_port: int,
    *,
    hubs: int = 3,
    scenario: bool = True,
    oprf_seed_hex: str | None = None,
    oprf_info: str | None = None,
) -> int:
    prepared = prepare_national(
        directory, base_port, hubs=hubs, oprf_seed_hex=oprf_seed_hex, oprf_info=oprf_info
    )
    national: list[NodeServer] = [
        pseudonymiser_server(build_pseudonymiser(load_settings(prepared["pseudonymiser_config"]))),
        index_server(build_index(load_settings(prepared["index_config"]))),
    ]
    hub_servers = [
        HubServer(build_hub(load_settings(config))) for config in prepared["hub_configs"].values()
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[HubServer | NodeServer] = []
    clients: dict[str, HubClient] = {}
    try:
        servers: list[HubServer | NodeServer] = [*national, *hub_servers]
        for server in servers:
            await server.start()
            started.append(server)
        print("zvh-gateway national demo:", flush=True)
        for node in prepared["network"]["nodes"]:
            print(f"  {node['role']:>13} {node['org']:<22} {node['url']}", flush=True)
        print(f"network description: {prepared['network_file']}", flush=True)
        if scenario:
            urls = {n["org"]: n["url"] for n in prepared["network"]["nodes"]}
            for p in prepared["network"]["partners"]:
                clients[p["org"]] = HubClient(urls[p["hub"]], OrgKeys.load(p["key_file"]))
            play = asyncio.ensure_future(play_national(prepared, clients))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({play, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not play.done():
                play.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await play
            stopped.cancel()
        if not stop.is_set():
            print("The nodes keep serving. Press Ctrl-C to stop.", flush=True)
        await stop.wait()
    finally:
        for client in clients.values():
            await client.close()
        for server in reversed(started):  # hubs first, then the national services
            await server.stop()
    print("demo stopped", flush=True)
    return 0
