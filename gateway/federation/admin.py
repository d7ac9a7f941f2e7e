"""Offline administration of the national nodes: the OPRF key, a node's folder, and
the `[national]` section of a hub's config.

Run from the CLI (and the national demo), beside or without a running node. The
trust lists themselves are managed with `zvh-gateway partner add --role hub`
(`gateway.services.admin.add_partner`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.clock import Clock
from gateway.crypto.keys import OrgKeys
from gateway.crypto.oprf_key import OprfKey
from gateway.errors import ConfigError
from gateway.storage.offline import offline_transaction

ROLES = ("pseudonymiser", "index")


def generate_oprf_key(
    out: Path, *, seed_hex: str | None = None, info: str | None = None
) -> OprfKey:
    """Write a new OPRF key file (0600). With a seed: RFC 9497 DeriveKeyPair(seed, info)."""
    if seed_hex is None:
        if info is not None:
            raise ConfigError("--info is only used with --seed")
        key = OprfKey.generate()
    else:
        try:
            seed = bytes.fromhex(seed_hex)
        except ValueError:
            raise ConfigError("--seed must be hex") from None
        if len(seed) != 32:
            raise ConfigError("--seed must be 32 bytes (64 hex digits)")
        key = OprfKey.generate(seed, (info or "").encode("utf-8"))
    out.parent.mkdir(parents=True, exist_ok=True)
    key.save(out)
    return key


@dataclass(frozen=True, slots=True)
class NodePaths:
    config: Path
    key_file: Path
    database: Path
    oprf_key_file: Path | None


def render_node_config(
    *,
    role: str,
    org: str,
    host: str = "127.0.0.1",
    port: int = 8090,
    metrics_port: int | None = None,
) -> str:
    """The documented TOML that `init-node` writes for the pseudonymiser or the index."""
    metrics = (
        f"metrics_port = {metrics_port}\n"
        if metrics_port is not None
        else "# metrics_port = 9090\n"
    )
    if role == "pseudonymiser":
        section = """[pseudonymiser]
oprf_key_file = "keys/oprf.key.json"  # `zvh-gateway keys generate-oprf`, mode 0600
rate_limit_per_minute = 6000       # blinded elements per calling hub per minute
max_batch = 100                    # blinded elements per request
"""
    else:
        section = """[index]
max_lease_days = 31                # longer leases are shortened to this
rate_limit_per_minute = 60000      # registrations and lookups per calling hub per minute
prune_period_s = 3600              # expired registrations are deleted within this period
"""
    return f"""# zvh-gateway national {role} configuration (see docs/operations.md).
# Relative paths are relative to this file. Its trust list of hubs is managed with
#   zvh-gateway partner add --config THIS_FILE --role hub --org HUB --public-file HUB.pub.json

[node]
role = "{role}"
org = "{org}"
key_file = "keys/{org}.key.json"   # Ed25519 + X25519 private keys, mode 0600
database = "{role}.sqlite3"
log_level = "info"

[http]
host = "{host}"
port = {port}
# public_authority = "{role}.example.nl"   # what hubs sign as @authority; default host:port
scheme = "http"
metrics_host = "127.0.0.1"
{metrics}
[hub]                              # authentication and the node's own ledger
clock_skew_s = 300
nonce_window_s = 600

{section}"""


def init_node(
    directory: Path,
    *,
    role: str,
    org: str,
    clock: Clock,
    host: str = "127.0.0.1",
    port: int = 8090,
    metrics_port: int | None = None,
    oprf_seed_hex: str | None = None,
    oprf_info: str | None = None,
) -> NodePaths:
    """Create DIR/<role>.toml, its keys (and the OPRF key) and a database with an empty
    trust list: every request gets 401 until hubs are added with `partner add`."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}")
    config = directory / f"{role}.toml"
    if config.exists():
        raise ConfigError(f"{config} exists already; refusing to overwrite a node")
    if role != "pseudonymiser" and (oprf_seed_hex is not None or oprf_info is not None):
        raise ConfigError("--oprf-seed and --oprf-info are for the pseudonymiser")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keys").mkdir(mode=0o700, exist_ok=True)
    keys = OrgKeys.generate(org)
    key_file = directory / "keys" / f"{org}.key.json"
    keys.save(key_file)
    oprf_file = None
    if role == "pseudonymiser":
        oprf_file = directory / "keys" / "oprf.key.json"
        generate_oprf_key(oprf_file, seed_hex=oprf_seed_hex, info=oprf_info)
    config.write_text(
        render_node_config(role=role, org=org, host=host, port=port, metrics_port=metrics_port),
        encoding="utf-8",
    )
    os.chmod(config, 0o640)
    database = directory / f"{role}.sqlite3"
    now = clock.now_ms()
    with offline_transaction(database) as tx:
        tx.append_ledger(
            "node-initialised",
            now,
            {"node": org, "role": role, "signing_kid": keys.signing_kid},
            (org,),
        )
    return NodePaths(config, key_file, database, oprf_file)


@dataclass(frozen=True, slots=True)
class HubContact:
    org: str
    contact: str


def render_national_section(
    *,
    pseudonymiser_url: str,
    index_url: str,
    hubs: Sequence[HubContact],
    canary_input: str | None = None,
    canary_pid: str | None = None,
    known_check_orgs: Sequence[str] | None = None,
    **more: float | int | str | bool | list[str],
) -> str:
    """A hub's `[national]` section (append it to the hub's TOML); `more` are further
    settings of the section (timeout_s, lease_days, ...), checked when it is loaded."""
    q = json.dumps  # JSON strings, numbers, booleans and lists of strings are valid TOML
    lines = [
        "",
        "[national]                         # the landelijke bekendheidscheck (PROTOCOL §6, §7)",
        f"pseudonymiser_url = {q(pseudonymiser_url)}",
        f"index_url = {q(index_url)}",
    ]
    if canary_input is not None and canary_pid is not None:
        lines += [f"canary_input = {q(canary_input)}", f"canary_pid = {q(canary_pid)}"]
    if known_check_orgs is not None:
        lines.append(f"known_check_orgs = {q(list(known_check_orgs))}")
    lines += [f"{key} = {q(value)}" for key, value in more.items()]
    for hub in hubs:
        lines += ["", "[[national.hubs]]", f"org = {q(hub.org)}", f"contact = {q(hub.contact)}"]
    return "\n".join(lines) + "\n"
