"""Offline administration of a hub: initialise it, and manage its directory.

These run from the CLI, beside or without a running hub. Every change to the
directory is also a ledger entry, so an auditor can see which key was valid when.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.clock import Clock
from gateway.config import Settings, render_hub_config
from gateway.crypto.encoding import sha256
from gateway.crypto.keys import OrgKeys, PublicKeys, kid_of
from gateway.errors import ConfigError
from gateway.ledger.checkpoint import origin_for
from gateway.ledger.verify import VerifyReport, find_origin, verify_ledger
from gateway.policy.rules import default_policy_text, load_policy
from gateway.services import retention
from gateway.services.explain import explain_wat
from gateway.storage import policy_store, stores
from gateway.storage.offline import offline_read, offline_transaction, read_ledger_file
from gateway.storage.records import OrgRecord


@dataclass(frozen=True, slots=True)
class HubPaths:
    config: Path
    key_file: Path
    database: Path


def init_hub(
    directory: Path,
    org: str,
    clock: Clock,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    metrics_port: int | None = None,
) -> HubPaths:
    """Create DIR/hub.toml, DIR/keys/<org>.key.json (0600) and an empty database."""
    config = directory / "hub.toml"
    if config.exists():
        raise ConfigError(f"{config} exists already; refusing to overwrite a hub")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keys").mkdir(mode=0o700, exist_ok=True)
    keys = OrgKeys.generate(org)
    key_file = directory / "keys" / f"{org}.key.json"
    keys.save(key_file)
    (directory / "policy.toml").write_text(default_policy_text(), encoding="utf-8")
    config.write_text(
        render_hub_config(org=org, host=host, port=port, metrics_port=metrics_port),
        encoding="utf-8",
    )
    os.chmod(config, 0o640)
    database = directory / "hub.sqlite3"
    now = clock.now_ms()
    with offline_transaction(database) as tx:
        stores.upsert_org(
            tx,
            OrgRecord(
                org=org,
                role="hub",
                domain=None,
                name=org,
                signing_key=keys.signing_key,
                signing_kid=keys.signing_kid,
                encryption_key=keys.encryption_key,
                encryption_kid=keys.encryption_kid,
                status="active",
                valid_until_ms=None,
                created_ms=now,
                revoked_ms=None,
            ),
        )
        tx.append_ledger(
            "hub-initialised", now, {"hub": org, "signing_kid": keys.signing_kid}, (org,)
        )
    return HubPaths(config, key_file, database)


def add_partner(
    settings: Settings,
    clock: Clock,
    *,
    public: PublicKeys,
    role: str,
    domain: str | None,
    name: str | None,
    valid_until_ms: int | None = None,
) -> OrgRecord:
    if settings.node.role != "hub":
        # The pseudonymiser's and the index's directory is their trust list of hubs.
        if role != "hub":
            raise ConfigError(f"a {settings.node.role} trusts organisations of role hub only")
        if public.org == settings.node.org:
            raise ConfigError(f"{public.org} is this {settings.node.role} itself")
    elif role not in ("zvh", "partner", "incidental"):
        raise ConfigError(f"role must be zvh, partner or incidental, not {role!r}")
    now = clock.now_ms()
    rec = OrgRecord(
        org=public.org,
        role=role,
        domain=domain,
        name=name or public.org,
        signing_key=public.signing_key,
        signing_kid=kid_of(public.signing_key),
        encryption_key=public.encryption_key,
        encryption_kid=kid_of(public.encryption_key),
        status="active",
        valid_until_ms=valid_until_ms,
        created_ms=now,
        revoked_ms=None,
    )
    with offline_transaction(settings.node.database) as tx:
        existing = {o.org: o for o in stores.list_orgs(tx)}.get(public.org)
        if existing is not None and existing.role == "hub" and settings.node.role == "hub":
            raise ConfigError(f"{public.org} is the hub itself")
        stores.upsert_org(tx, rec)
        tx.append_ledger(
            "org-registered" if existing is None else "org-keys-changed",
            now,
            {
                "org": rec.org,
                "role": role,
                "domain": domain,
                "signing_kid": rec.signing_kid,
                "encryption_kid": rec.encryption_kid,
                "valid_until_ms": valid_until_ms,
            },
            (rec.org,),
        )
    return rec


def list_partners(settings: Settings) -> list[OrgRecord]:
    with offline_read(settings.node.database) as tx:
        return stores.list_orgs(tx)


def revoke_partner(settings: Settings, clock: Clock, org: str) -> bool:
    now = clock.now_ms()
    with offline_transaction(settings.node.database) as tx:
        changed = stores.revoke_org(tx, org, now)
        if changed:
            tx.append_ledger("org-revoked", now, {"org": org}, (org,))
    return changed


def verify_file(
    path: Path, hub_key: bytes, hub_org: str | None = None, anchors: tuple[str, ...] = ()
) -> VerifyReport:
    """Verify a ledger database file against a pinned hub key (never one from the file)
    and, optionally, signed checkpoints kept elsewhere (`anchors`)."""
    checkpoints, rows = read_ledger_file(path)
    # The origin is only a name: the signature's key hash binds it to the pinned key.
    origin = origin_for(hub_org) if hub_org is not None else find_origin(checkpoints, hub_key)
    return verify_ledger(rows, checkpoints, origin=origin, public_key=hub_key, anchors=anchors)


def purge_offline(settings: Settings, clock: Clock, *, dry_run: bool) -> retention.PurgePlan:
    with offline_transaction(settings.node.database) as tx:
        if dry_run:
            return retention.plan(tx, settings.retention, clock.now_ms())
        return retention.execute(tx, settings.retention, clock.now_ms(), actor=settings.node.org)


def publish_protocol(
    settings: Settings,
    clock: Clock,
    *,
    text: bytes,
    title: str,
    themes: list[str],
    protocol_id: str | None = None,
    valid_from_ms: int | None = None,
    valid_until_ms: int | None = None,
) -> policy_store.ProtocolRecord:
    """Publish a new version of the region's privacy protocol (partners must accede anew)."""
    policy = load_policy(settings.node.policy_file)
    unknown = [t for t in themes if t not in policy.themes]
    if unknown:
        raise ConfigError(f"themes not in the policy file: {', '.join(unknown)}")
    if not text.strip():
        raise ConfigError("the protocol text is empty")
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("the protocol text must be UTF-8") from exc
    now = clock.now_ms()
    with offline_transaction(settings.node.database) as tx:
        existing = policy_store.list_protocols(tx)
        version = max((p.version for p in existing), default=0) + 1
        rec = policy_store.ProtocolRecord(
            protocol_id=protocol_id or f"privacyprotocol-v{version}",
            version=version,
            title=title,
            text=text,
            text_sha256=sha256(text).hex(),
            themes=tuple(themes),
            valid_from_ms=now if valid_from_ms is None else valid_from_ms,
            valid_until_ms=valid_until_ms,
            published_ms=now,
        )
        if any(p.protocol_id == rec.protocol_id for p in existing):
            raise ConfigError(f"protocol {rec.protocol_id} exists already")
        policy_store.insert_protocol(tx, rec)
        tx.append_ledger(
            "protocol-published",
            now,
            {**rec.summary(), "hub": settings.node.org},
            (settings.node.org,),
        )
    return rec


def revoke_accession(settings: Settings, clock: Clock, protocol_id: str, org: str) -> bool:
    now = clock.now_ms()
    with offline_transaction(settings.node.database) as tx:
        changed = policy_store.revoke_accession(tx, protocol_id, org, now)
        if changed:
            tx.append_ledger(
                "accession-revoked", now, {"protocol_id": protocol_id, "org": org}, (org,)
            )
    return changed


def explain(settings: Settings, clock: Clock, request: dict[str, Any]) -> dict[str, Any]:
    policy = load_policy(settings.node.policy_file)
    with offline_read(settings.node.database) as tx:
        return explain_wat(tx, policy, request, clock.now_ms())
