"""`zvh-gateway`: argument parsing and exit codes only; the work is elsewhere.

Exit codes: 0 success, 1 a check failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import cli_ops
from gateway.adapters import commands as adapter_commands
from gateway.adapters import ledger_client
from gateway.clock import SystemClock
from gateway.config import load_settings
from gateway.crypto.encoding import b64u_decode
from gateway.crypto.keys import OrgKeys, PublicKeys
from gateway.crypto.oprf_key import OprfKey
from gateway.demo import run_demo
from gateway.demo_national import run_national_demo
from gateway.errors import ConfigError, GatewayError
from gateway.federation import admin as national_admin
from gateway.logs import configure
from gateway.models import Domain
from gateway.policy.rules import load_policy
from gateway.runtime import settle_heap
from gateway.services import admin, review_auth
from gateway.services.admin import purge_offline, verify_file
from gateway.services.directory import org_json
from gateway.web.hub_app import HubServer, build_hub
from gateway.web.index_app import build_index, index_server
from gateway.web.node_app import NodeServer
from gateway.web.pseudonymiser_app import build_pseudonymiser, pseudonymiser_server

# `hub`: in the trust list of the national pseudonymiser or index.
ROLES = ("zvh", "partner", "incidental", "hub")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zvh-gateway", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init-hub", help="create a hub's config, keys and database in DIR")
    s.add_argument("--dir", required=True, type=Path)
    s.add_argument("--org", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--metrics-port", type=int)

    k = sub.add_parser("keys", help="organisation keys").add_subparsers(
        dest="keys_cmd", required=True
    )
    g = k.add_parser("generate", help="write an Ed25519 + X25519 key pair and a public-key file")
    g.add_argument("--org", required=True)
    g.add_argument("--out", required=True, type=Path)

    pa = sub.add_parser("partner", help="the hub's directory").add_subparsers(
        dest="partner_cmd", required=True
    )
    add = pa.add_parser("add", help="register an organisation's public keys")
    add.add_argument("--config", required=True, type=Path)
    add.add_argument("--org", required=True)
    add.add_argument(
        "--signing-key", help="b64u Ed25519 key (write --signing-key=KEY: keys may start with '-')"
    )
    add.add_argument("--encryption-key", help="b64u X25519 key (write --encryption-key=KEY)")
    add.add_argument(
        "--public-file", type=Path, help="the .pub.json of `keys generate`, instead of the two keys"
    )
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--domain", choices=[d.value for d in Domain])
    add.add_argument("--name")
    add.add_argument("--valid-until-ms", type=int)
    ls = pa.add_parser("list", help="list the organisations")
    ls.add_argument("--config", required=True, type=Path)
    ls.add_argument("--json", action="store_true")
    rv = pa.add_parser("revoke", help="revoke an organisation's keys")
    rv.add_argument("--config", required=True, type=Path)
    rv.add_argument("--org", required=True)

    c = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_cmd", required=True
    )
    chk = c.add_parser("check", help="validate a config file and print it, secrets redacted")
    chk.add_argument("--config", required=True, type=Path)

    sv = sub.add_parser("serve", help="run a node until SIGTERM/SIGINT")
    sv.add_argument("--config", required=True, type=Path)
    sv.add_argument("--host")
    sv.add_argument("--port", type=int)
    sv.add_argument("--metrics-port", type=int)

    _add_ledger(sub)

    _add_policy(sub)

    cli_ops.add_ops(sub)

    _add_national(sub, k)

    _add_users(sub)
    adapter_commands.add_parsers(sub)

    d = sub.add_parser("demo", help="run a small regional network on loopback")
    d.add_argument("--dir", type=Path, default=Path(".demo"))
    d.add_argument("--base-port", type=int, default=8400)
    d.add_argument("--no-scenario", action="store_true")
    _add_national_demo(d)
    return p


def _add_ledger(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lg = sub.add_parser("ledger", help="the exchange ledger").add_subparsers(
        dest="ledger_cmd", required=True
    )
    ver = lg.add_parser("verify", help="verify a ledger database file offline")
    ver.add_argument("--db", required=True, type=Path)
    ver.add_argument("--hub-key", required=True, help="the hub's Ed25519 public key (b64u)")
    ver.add_argument("--hub-org", help="the hub's org id (default: from its checkpoints)")
    ver.add_argument("--json", action="store_true")
    ver.add_argument(
        "--allow-uncovered",
        action="store_true",
        help="accept entries after the last checkpoint (a copy of a running hub)",
    )
    ver.add_argument(
        "--checkpoint",
        action="append",
        type=Path,
        default=[],
        help="a signed checkpoint note kept elsewhere (e.g. saved from the public endpoint)"
        " that the ledger must extend; repeatable",
    )
    pr = lg.add_parser("prove", help="verify a hub's checkpoint and an inclusion proof")
    pr.add_argument("--url", required=True)
    pr.add_argument("--index", required=True, type=int)
    pr.add_argument("--hub-key", required=True)
    pr.add_argument("--leaf-hash", help="the leaf hash you were given for that index (hex)")
    pu = lg.add_parser("purge", help="purge what retention allows (see [retention])")
    pu.add_argument("--config", required=True, type=Path)
    pu.add_argument("--dry-run", action="store_true")


def _add_policy(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pp = sub.add_parser("protocol", help="the region's privacy protocol").add_subparsers(
        dest="protocol_cmd", required=True
    )
    pub = pp.add_parser("publish", help="publish a new protocol version (needs new accessions)")
    pub.add_argument("--config", required=True, type=Path)
    pub.add_argument("--file", required=True, type=Path, help="the protocol text (UTF-8)")
    pub.add_argument("--themes", required=True, nargs="+")
    pub.add_argument("--title", default="Privacyprotocol")
    pub.add_argument("--id", dest="protocol_id")
    pub.add_argument("--valid-until-ms", type=int)
    rv = pp.add_parser("revoke-accession", help="revoke an organisation's accession")
    rv.add_argument("--config", required=True, type=Path)
    rv.add_argument("--org", required=True)
    rv.add_argument("--protocol-id", required=True)
    pl = sub.add_parser("policy", help="the hub's policy file").add_subparsers(
        dest="policy_cmd", required=True
    )
    chk = pl.add_parser("check", help="validate a policy file")
    chk.add_argument("file", type=Path)
    ex = pl.add_parser("explain", help="the hub's decision on a wat-request, and its rule")
    ex.add_argument("--config", required=True, type=Path)
    ex.add_argument(
        "--request",
        required=True,
        help="JSON: requester, case_ref, subject_ref, holder, categories, legal_basis (or @FILE)",
    )


def _add_users(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    us = sub.add_parser("users", help="people who log in to the review pages").add_subparsers(
        dest="users_cmd", required=True
    )
    ua = us.add_parser("add", help="add a user, or reset one's password (read from stdin)")
    ua.add_argument("--config", required=True, type=Path)
    ua.add_argument("--name", required=True)
    ua.add_argument("--role", required=True, choices=[r.value for r in review_auth.UserRole])


def _cmd_users(args: argparse.Namespace) -> int:
    # Never a command-line argument: those end up in shell history and `ps`.
    if sys.stdin.isatty():
        password = getpass.getpass("Wachtwoord: ")
        if getpass.getpass("Nogmaals: ") != password:
            raise ConfigError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    settings = load_settings(args.config)
    new = review_auth.add_user(
        settings, SystemClock(), name=args.name, role=args.role, password=password
    )
    print(f"{'added' if new else 'reset'} user {args.name} ({args.role})")
    return 0


def _add_national(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    keys: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    go = keys.add_parser("generate-oprf", help="write the national pseudonymiser's OPRF key")
    go.add_argument("--out", required=True, type=Path)
    go.add_argument("--seed", help="32-byte hex seed: RFC 9497 DeriveKeyPair (tests, demos)")
    go.add_argument("--info", help="DeriveKeyPair info, with --seed")
    n = sub.add_parser("init-node", help="create a national pseudonymiser's or index's folder")
    n.add_argument("--role", required=True, choices=national_admin.ROLES)
    n.add_argument("--dir", required=True, type=Path)
    n.add_argument("--org", required=True)
    n.add_argument("--host", default="127.0.0.1")
    n.add_argument("--port", type=int, default=8090)
    n.add_argument("--metrics-port", type=int)
    n.add_argument("--oprf-seed", help="pseudonymiser: derive its OPRF key from this hex seed")
    n.add_argument("--oprf-info", help="pseudonymiser: DeriveKeyPair info, with --oprf-seed")


def _add_national_demo(d: argparse.ArgumentParser) -> None:
    d.add_argument("--national", action="store_true", help="N hubs, pseudonymiser and index")
    d.add_argument("--hubs", type=int, default=3, help="with --national: how many hubs (1-20)")
    d.add_argument("--oprf-seed", help="with --national: derive the OPRF key (hex seed)")
    d.add_argument("--oprf-info", help="with --national and --oprf-seed: DeriveKeyPair info")


def _cmd_init_node(args: argparse.Namespace) -> int:
    paths = national_admin.init_node(
        args.dir,
        role=args.role,
        org=args.org,
        clock=SystemClock(),
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        oprf_seed_hex=args.oprf_seed,
        oprf_info=args.oprf_info,
    )
    print(
        f"{args.role} {args.org} initialised:\n  config   {paths.config}\n  keys     "
        f"{paths.key_file}\n  database {paths.database}"
        + (f"\n  OPRF key {paths.oprf_key_file}" if paths.oprf_key_file else "")
        + f"\ntrust a hub with: zvh-gateway partner add --config {paths.config} --role hub"
        " --org HUB --public-file HUB.pub.json"
    )
    return 0


def _cmd_keys_generate_oprf(args: argparse.Namespace) -> int:
    key = national_admin.generate_oprf_key(args.out, seed_hex=args.seed, info=args.info)
    print(f"OPRF key: {args.out} (mode 0600, key id {key.key_id})")
    return 0


def _setup_logging(level: str = "info") -> None:
    configure(level)


def _cmd_init_hub(args: argparse.Namespace) -> int:
    paths = admin.init_hub(
        args.dir,
        args.org,
        SystemClock(),
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
    )
    print(
        f"hub {args.org} initialised:\n  config   {paths.config}\n  keys     {paths.key_file}"
        f"\n  database {paths.database}\nstart it with: zvh-gateway serve --config {paths.config}"
    )
    return 0


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    if args.keys_cmd == "generate-oprf":
        return _cmd_keys_generate_oprf(args)
    keys = OrgKeys.generate(args.org)
    args.out.mkdir(parents=True, exist_ok=True)
    private = args.out / f"{args.org}.key.json"
    public = args.out / f"{args.org}.pub.json"
    keys.save(private)
    public.write_text(json.dumps(keys.public().to_json(), indent=2) + "\n", encoding="utf-8")
    print(f"private key: {private} (mode 0600, keep it at the organisation)\npublic keys: {public}")
    print(f"signing_key    {keys.public().to_json()['signing_key']}")
    print(f"encryption_key {keys.public().to_json()['encryption_key']}")
    return 0


def _public_keys(args: argparse.Namespace) -> PublicKeys:
    try:
        if args.public_file is not None:
            public = PublicKeys.from_json(json.loads(args.public_file.read_text(encoding="utf-8")))
            if public.org != args.org:
                raise ConfigError(f"{args.public_file} is for {public.org}, not {args.org}")
            return public
        if args.signing_key is None or args.encryption_key is None:
            raise ConfigError("give --signing-key and --encryption-key, or --public-file")
        return PublicKeys(args.org, b64u_decode(args.signing_key), b64u_decode(args.encryption_key))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"bad public keys: {exc}") from exc


def _cmd_partner(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    clock = SystemClock()
    if args.partner_cmd == "add":
        public = _public_keys(args)
        rec = admin.add_partner(
            settings,
            clock,
            public=public,
            role=args.role,
            domain=args.domain,
            name=args.name,
            valid_until_ms=args.valid_until_ms,
        )
        print(f"registered {rec.org} ({rec.role}, signing kid {rec.signing_kid})")
        return 0
    if args.partner_cmd == "list":
        records = admin.list_partners(settings)
        if args.json:
            print(json.dumps([org_json(r) for r in records], indent=2))
        else:
            print(f"{'org':32} {'role':10} {'domain':8} {'status':8} signing_kid")
            for r in records:
                print(f"{r.org:32} {r.role:10} {r.domain or '-':8} {r.status:8} {r.signing_kid}")
        return 0
    if not admin.revoke_partner(settings, clock, args.org):
        print(f"{args.org}: no active registration", file=sys.stderr)
        return 1
    print(f"revoked {args.org}")
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    OrgKeys.load(settings.node.key_file)  # the key file must exist and parse
    if settings.pseudonymiser is not None:
        OprfKey.load(settings.pseudonymiser.oprf_key_file)  # and so must the OPRF key
    print(json.dumps(settings.redacted(), indent=2))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("metrics_port", args.metrics_port))
        if v is not None
    }
    if overrides:
        settings = settings.model_copy(update={"http": settings.http.model_copy(update=overrides)})
    _setup_logging(settings.node.log_level)

    async def run() -> None:
        server: HubServer | NodeServer
        if settings.node.role == "pseudonymiser":
            server = pseudonymiser_server(build_pseudonymiser(settings))
        elif settings.node.role == "index":
            server = index_server(build_index(settings))
        else:
            server = HubServer(build_hub(settings))
        await server.start()
        settle_heap()
        http = settings.http
        print(
            f"{settings.node.role} {settings.node.org} serving on http://{http.host}:{http.port}"
            + (f" (metrics on :{http.metrics_port})" if http.metrics_port else ""),
            flush=True,
        )
        await wait_for_signal()
        await server.stop()

    asyncio.run(run())
    return 0


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _hub_key(text: str) -> bytes:
    try:
        key = b64u_decode(text)
    except ValueError as exc:
        raise ConfigError("--hub-key is not base64url") from exc
    if len(key) != 32:
        raise ConfigError("--hub-key must be a 32-byte Ed25519 public key")
    return key


def _cmd_ledger(args: argparse.Namespace) -> int:
    if args.ledger_cmd == "verify":
        try:
            anchors = tuple(p.read_text(encoding="utf-8") for p in args.checkpoint)
        except OSError as exc:
            raise ConfigError(f"cannot read a --checkpoint file: {exc}") from exc
        report = verify_file(args.db, _hub_key(args.hub_key), args.hub_org, anchors)
        if report.ok and report.uncovered and not args.allow_uncovered:
            # A stopped hub covers every entry with its final checkpoint: entries no
            # signature vouches for mean a lost (or deleted) checkpoint.
            report.fail(
                report.entries - report.uncovered,
                f"{report.uncovered} entries are not covered by a signed checkpoint "
                "(for a copy of a running hub, pass --allow-uncovered)",
            )
        if args.json:
            print(json.dumps(dataclasses.asdict(report), indent=2))
        elif report.ok:
            print(
                f"ledger OK: {report.entries} entries, {report.checkpoints} checkpoints, "
                f"{report.bodies_checked} bodies checked, {report.purged} purged, "
                f"{report.uncovered} not yet covered by a checkpoint"
            )
        else:
            print(f"ledger BAD at index {report.first_bad_index}: {report.problem}")
        return 0 if report.ok else 1
    if args.ledger_cmd == "prove":
        result = asyncio.run(
            ledger_client.prove(
                args.url, args.index, _hub_key(args.hub_key), expect_leaf_hash=args.leaf_hash
            )
        )
        if result.ok:
            print(
                f"entry {result.index} (leaf {result.leaf_hash}) is in the ledger of "
                f"{result.origin}, signed size {result.size}, root {result.root}"
            )
            return 0
        print(f"NOT proven: {result.problem}")
        return 1
    settings = load_settings(args.config)
    todo = purge_offline(settings, SystemClock(), dry_run=args.dry_run)
    verb = "would purge" if args.dry_run else "purged"
    print(f"{verb} {len(todo.entries)} ledger bodies and the data of {len(todo.cases)} cases")
    return 0


def _cmd_protocol(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.protocol_cmd == "publish":
        try:
            text = args.file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.file}: {exc}") from exc
        rec = admin.publish_protocol(
            settings,
            SystemClock(),
            text=text,
            title=args.title,
            themes=args.themes,
            protocol_id=args.protocol_id,
            valid_until_ms=args.valid_until_ms,
        )
        print(
            f"published {rec.protocol_id} (version {rec.version}, text sha256 "
            f"{rec.text_sha256}); every member must now sign a new accession"
        )
        return 0
    if admin.revoke_accession(settings, SystemClock(), args.protocol_id, args.org):
        print(f"revoked the accession of {args.org} to {args.protocol_id}")
        return 0
    print(f"{args.org} has no active accession to {args.protocol_id}", file=sys.stderr)
    return 1


def _cmd_policy(args: argparse.Namespace) -> int:
    if args.policy_cmd == "check":
        policy = load_policy(args.file)
        print(f"policy OK: {len(policy.themes)} themes, {len(policy.categories)} categories")
        return 0
    settings = load_settings(args.config)
    raw = args.request
    try:
        text = Path(raw[1:]).read_text(encoding="utf-8") if raw.startswith("@") else raw
        request = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--request is not JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise ConfigError("--request must be a JSON object")
    result = admin.explain(settings, SystemClock(), request)
    print(json.dumps(result, indent=2))
    return 0 if result["decision"] == "allow" else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    _setup_logging("warning")
    if args.national:
        return asyncio.run(
            run_national_demo(
                args.dir,
                args.base_port,
                hubs=args.hubs,
                scenario=not args.no_scenario,
                oprf_seed_hex=args.oprf_seed,
                oprf_info=args.oprf_info,
            )
        )
    if args.oprf_seed is not None or args.oprf_info is not None:
        raise ConfigError("--oprf-seed and --oprf-info go with --national")
    return asyncio.run(run_demo(args.dir, args.base_port, scenario=not args.no_scenario))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "init-hub": _cmd_init_hub,
        "init-node": _cmd_init_node,
        "keys": _cmd_keys_generate,
        "partner": _cmd_partner,
        "config": _cmd_config_check,
        "serve": _cmd_serve,
        "demo": _cmd_demo,
        "ledger": _cmd_ledger,
        "protocol": _cmd_protocol,
        "policy": _cmd_policy,
        "backup": cli_ops.backup,
        "restore": cli_ops.restore,
        "users": _cmd_users,
        "init-adapter": adapter_commands.cmd_init_adapter,
        "adapter": adapter_commands.cmd_adapter,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"zvh-gateway: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        logging.getLogger(__name__).debug("command failed", exc_info=True)
        print(f"zvh-gateway: {exc}", file=sys.stderr)
        return 1
