"""Node configuration: one TOML file per node -> a frozen, validated `Settings`.

Relative paths in the file are resolved against the file's own folder, so a node
directory can be moved as a whole. `redacted()` is what `config check` prints:
secrets never leave this module in clear text.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from gateway.errors import ConfigError

REDACTED = "**redacted**"

OrgId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,62}$")]
Port = Annotated[int, Field(ge=0, le=65535)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSettings(_Section):
    # One program, three roles (PROTOCOL §6, §7): a region's hub, or the national
    # pseudonymiser or index. `serve` runs what this names.
    role: Literal["hub", "pseudonymiser", "index"] = "hub"
    org: OrgId
    key_file: Path
    database: Path
    # The region's policy (what its privacy protocol allows); refused at start if invalid.
    policy_file: Path = Path("policy.toml")
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 8080
    # The authority clients sign (`@authority`, RFC 9421). Never taken from Host alone.
    public_authority: str | None = None
    scheme: Literal["http", "https"] = "http"
    metrics_host: str = "127.0.0.1"
    metrics_port: Port | None = None
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 4 * 1024 * 1024
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class HubSettings(_Section):
    clock_skew_s: Annotated[int, Field(ge=1, le=3600)] = 300
    nonce_window_s: Annotated[int, Field(ge=60, le=86400)] = 600
    inbox_visibility_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    inbox_max_wait_s: Annotated[int, Field(ge=0, le=120)] = 30
    write_batch_max: Annotated[int, Field(ge=1, le=10_000)] = 512
    # Where Ed25519 signatures are verified: "process", a verifier process beside the
    # node (on another core than the event loop; inline while it is down), or
    # "inline", on the event loop (one core, or to save the ~20 MB of a process).
    signature_verifier: Literal["process", "inline"] = "process"
    directory_refresh_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    # PROTOCOL §5: every entry is covered by a signed checkpoint within 10 s, and the
    # hub re-signs at least every 60 s when idle.
    checkpoint_interval_s: Annotated[float, Field(gt=0, le=10)] = 2.0
    checkpoint_idle_s: Annotated[float, Field(gt=0, le=60)] = 30.0
    # Reserved for the review pages (session cookies); redacted by `config check`.
    session_secret: SecretStr | None = None


class RetentionSettings(_Section):
    """How long identifying data is kept after a case is closed (afgeschaald).

    No national periods are fixed ("no longer than necessary"); a region sets its own.
    """

    # Ledger bodies and salts of a closed case's entries, per entry type; the leaf
    # data stays forever, so proofs keep working after the purge.
    entry_days: Annotated[int, Field(ge=0, le=36500)] = 730
    entry_days_by_type: dict[str, Annotated[int, Field(ge=0, le=36500)]] = {}
    # The case's pids, exchange records and inbox leftovers at the hub.
    case_data_days: Annotated[int, Field(ge=0, le=36500)] = 30
    purge_interval_s: Annotated[float, Field(gt=0)] = 3600.0


class MessageSettings(_Section):
    """Secure case messages, referrals, attachments and notifications (issue #8)."""

    # The largest attachment blob (ciphertext) the hub accepts; more is 413.
    max_blob_bytes: Annotated[int, Field(ge=1024, le=4 * 1024**3)] = 50 * 1024 * 1024
    # A blob no message or referral names within this time is garbage.
    blob_unreferenced_s: Annotated[float, Field(gt=0)] = 3600.0
    # Every blob is gone this long after its upload at the latest (retention), even
    # if a recipient never fetched it.
    blob_days: Annotated[float, Field(gt=0, le=3650)] = 30.0
    # The blob store's budget: an upload that would bring the stored ciphertext above
    # it is refused with 507 storage-full (the disk stays usable for the database).
    blob_store_budget_bytes: Annotated[int, Field(ge=1024**2, le=1024**5)] = 20 * 1024**3
    # How often the blob sweep and the notification checks run.
    sweep_interval_s: Annotated[float, Field(gt=0)] = 300.0
    # An incidental partner is told this long before its declaration for a case ends.
    declaration_notice_days: Annotated[float, Field(ge=0, le=365)] = 7.0


def _service_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError("must be http(s)://host[:port], without a path")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("must be http(s)://host[:port], without a path")
    return value.rstrip("/")


ServiceUrl = Annotated[str, AfterValidator(_service_url)]
PerMinute = Annotated[int, Field(ge=1, le=1_000_000)]


class PseudonymiserSettings(_Section):
    """The national pseudonymiser (role = "pseudonymiser")."""

    # Written by `zvh-gateway keys generate-oprf` (mode 0600); refused if others may read it.
    oprf_key_file: Path
    # Blinded elements per calling hub per minute (a token bucket; bursts up to a minute's worth).
    rate_limit_per_minute: PerMinute = 6000
    max_batch: Annotated[int, Field(ge=1, le=1000)] = 100


class IndexSettings(_Section):
    """The national index (role = "index")."""

    # A hub may not register a lease further ahead than this (longer ones are shortened).
    max_lease_days: Annotated[float, Field(gt=0, le=366)] = 31.0
    # Signed calls (registrations and lookups) per calling hub per minute.
    rate_limit_per_minute: PerMinute = 60_000
    # Expired registrations are deleted in slices: the whole table once per this period.
    prune_period_s: Annotated[float, Field(gt=0)] = 3600.0


class NationalHub(_Section):
    org: OrgId
    # How a professional reaches the ZVH of that region (phone, secure mail); shown in matches.
    contact: Annotated[str, StringConstraints(min_length=1, max_length=500)]


Pid = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]
CanaryInput = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}\|[0-9]{8}$")]
ThemeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,62}$")]


class NationalSettings(_Section):
    """A hub's link to the national check (optional: without it the national routes say 503)."""

    pseudonymiser_url: ServiceUrl
    index_url: ServiceUrl
    # The deadline for one call to the pseudonymiser or the index; the hub answers its
    # partner within it (with what it has) and never waits longer.
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 2.0
    # Index leases of open cases' subjects, renewed every renew_interval_s (at least daily).
    lease_days: Annotated[float, Field(gt=0, le=366)] = 30.0
    renew_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 21_600.0
    # The published synthetic canary "<BSN>|<YYYYMMDD>" and the pid it must give: a
    # different pid means the pseudonymiser's key changed (alert, and refuse to evaluate).
    canary_input: CanaryInput | None = None
    canary_pid: Pid | None = None
    canary_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    # Who may run known-checks, and for which purposes (themes of the policy file).
    # Default: the region's organisations of role `zvh`, for every theme.
    known_check_orgs: list[OrgId] | None = None
    known_check_themes: list[ThemeName] | None = None
    known_check_rate_per_minute: PerMinute = 120
    # Blinded elements a partner may have evaluated per minute (PROTOCOL §6).
    evaluate_rate_per_minute: PerMinute = 600
    # The national list of hubs and their contact routes (this hub included).
    hubs: list[NationalHub] = []

    @model_validator(mode="after")
    def _consistent(self) -> NationalSettings:
        if (self.canary_input is None) != (self.canary_pid is None):
            raise ValueError("canary_input and canary_pid go together")
        if self.renew_interval_s >= self.lease_days * 86_400:
            raise ValueError("renew_interval_s must be shorter than the lease")
        orgs = [h.org for h in self.hubs]
        if len(set(orgs)) != len(orgs):
            raise ValueError("hubs lists an organisation twice")
        return self


_ROLE_SECTIONS = {"pseudonymiser": "pseudonymiser", "index": "index", "national": "hub"}


class Settings(_Section):
    node: NodeSettings
    http: HttpSettings = HttpSettings()
    # Authentication, storage and checkpoint settings: used by every role.
    hub: HubSettings = HubSettings()
    retention: RetentionSettings = RetentionSettings()
    messages: MessageSettings = MessageSettings()
    pseudonymiser: PseudonymiserSettings | None = None
    index: IndexSettings | None = None
    national: NationalSettings | None = None
    source: Path | None = None

    @model_validator(mode="after")
    def _sections_match_role(self) -> Settings:
        for section, role in _ROLE_SECTIONS.items():
            if getattr(self, section) is not None and self.node.role != role:
                raise ValueError(f"[{section}] is only for role {role!r}")
        if self.node.role == "pseudonymiser" and self.pseudonymiser is None:
            raise ValueError("role 'pseudonymiser' needs a [pseudonymiser] section")
        return self

    @property
    def authority(self) -> str:
        """The normalised public authority that request signatures must name."""
        raw = self.http.public_authority or f"{self.http.host}:{self.http.port}"
        host, _, port = raw.lower().rpartition(":")
        default = "443" if self.http.scheme == "https" else "80"
        if host and port == default:
            return host
        return raw.lower()

    def redacted(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if data["hub"].get("session_secret") is not None:
            data["hub"]["session_secret"] = REDACTED
        data["authority"] = self.authority
        return data


M = TypeVar("M", bound=BaseModel)


def _resolve(base: Path, value: Any) -> Any:
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value


def read_toml(file: Path) -> dict[str, Any]:
    """A config file's tables; ConfigError says why it cannot be read."""
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {file}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {file}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc


def validated(model: type[M], file: Path, raw: dict[str, Any]) -> M:
    """`model` from a config file's tables; ConfigError names every field that is wrong."""
    try:
        return model.model_validate({**raw, "source": str(file.resolve())})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{file}: {problems}") from exc


def load_settings(path: str | Path) -> Settings:
    """Read and validate a node's TOML file; ConfigError names the field that is wrong."""
    file = Path(path)
    raw = read_toml(file)
    node = raw.get("node")
    if isinstance(node, dict):
        node.setdefault("policy_file", "policy.toml")
        for key in ("key_file", "database", "policy_file"):
            if key in node:
                node[key] = _resolve(file.parent.resolve(), node[key])
    pseudonymiser = raw.get("pseudonymiser")
    if isinstance(pseudonymiser, dict) and "oprf_key_file" in pseudonymiser:
        pseudonymiser["oprf_key_file"] = _resolve(
            file.parent.resolve(), pseudonymiser["oprf_key_file"]
        )
    return validated(Settings, file, raw)


def render_hub_config(
    *, org: str, host: str = "127.0.0.1", port: int = 8080, metrics_port: int | None = None
) -> str:
    """The documented TOML that `init-hub` writes."""
    metrics = (
        f"metrics_port = {metrics_port}\n"
        if metrics_port is not None
        else "# metrics_port = 9080\n"
    )
    return f"""# zvh-gateway hub configuration (see docs/operations.md).
# Relative paths are relative to this file.

[node]
role = "hub"
org = "{org}"                      # this hub's organisation id (PROTOCOL §1)
key_file = "keys/{org}.key.json"   # Ed25519 + X25519 private keys, mode 0600
database = "hub.sqlite3"           # embedded SQLite (WAL, synchronous=FULL)
policy_file = "policy.toml"        # themes, categories, legal bases (see the file itself)
log_level = "info"

[http]
host = "{host}"
port = {port}
# public_authority = "zvh.example.nl"   # what partners sign as @authority; default host:port
scheme = "http"
metrics_host = "127.0.0.1"
{metrics}max_body_bytes = 4194304

[hub]
clock_skew_s = 300                 # PROTOCOL §2: `created` at most this far from our clock
nonce_window_s = 600               # replay cache window (survives restarts)
inbox_visibility_timeout_s = 30    # an unacknowledged message is redelivered after this
inbox_max_wait_s = 30              # longest long-poll
checkpoint_interval_s = 2.0        # sign a checkpoint at most this long after appends (<= 10)
checkpoint_idle_s = 30.0           # re-sign at least this often when idle (<= 60)

[retention]                        # counted from the closure of a case
entry_days = 730                   # ledger bodies and salts of the case's entries
# entry_days_by_type = {{ "dat-request" = 365 }}
case_data_days = 30                # pids, exchange records, inbox leftovers
purge_interval_s = 3600

[messages]                         # case messages, referrals, attachments, notifications
max_blob_bytes = 52428800          # largest attachment (ciphertext); more is 413
blob_unreferenced_s = 3600         # an upload no message names is deleted after this
blob_days = 30                     # every attachment is gone this long after upload
blob_store_budget_bytes = 21474836480  # 20 GiB of attachments at most; more is 507
sweep_interval_s = 300
declaration_notice_days = 7        # incidental partners are told before a declaration ends
"""
