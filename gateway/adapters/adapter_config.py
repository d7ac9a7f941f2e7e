"""The adapter's configuration: one TOML file -> a frozen, validated `AdapterSettings`,
and the bearer token of its local API.

Relative paths are resolved against the file's own folder (as for a node). Errors
name the key that is wrong (`webhook.url: ...`). The token file is created with mode
0600 when missing, and refused when group or others may read it: whoever reads the
token can send requests in the organisation's name.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from gateway.config import read_toml, validated
from gateway.errors import ConfigError

OrgId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,62}$")]
Port = Annotated[int, Field(ge=0, le=65535)]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        raise ValueError("must be an http(s):// URL without credentials")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdapterSection(_Section):
    org: OrgId
    key_file: Path
    hub_url: HttpUrl
    # The adapter's own database (idempotency keys, deliveries, dead letters) and files.
    data_dir: Path
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Long-poll wait at the hub inbox (the hub caps it at its inbox_max_wait_s).
    poll_wait_s: Annotated[int, Field(ge=0, le=30)] = 20
    hub_timeout_s: Annotated[float, Field(gt=0, le=300)] = 60.0
    # Delivered items and answered idempotency keys are forgotten after this long.
    keep_days: Annotated[float, Field(gt=0, le=3650)] = 30.0


class LocalSection(_Section):
    """The local API and the referral form: bound to loopback unless told otherwise."""

    host: str = "127.0.0.1"
    port: Port = 8481
    token_file: Path
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 4 * 1024 * 1024
    # Outgoing attachments are read only from inside this folder (unset: none).
    attachment_dir: Path | None = None
    # Cookies get `Secure` when the form is served behind https.
    scheme: Literal["http", "https"] = "http"


class WebhookSection(_Section):
    url: HttpUrl
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Optional: sent as `Authorization: Bearer <token>`, so that the partner system can
    # tell its adapter from anyone else on its network (created 0600 when missing).
    token_file: Path | None = None


class FiledropSection(_Section):
    dir: Path
    scan_interval_s: Annotated[float, Field(gt=0, le=3600)] = 1.0


class DeliverySection(_Section):
    """Retries of inbox items to the partner system: exponential backoff, full jitter."""

    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 8
    backoff_base_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    backoff_max_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0

    @model_validator(mode="after")
    def _ordered(self) -> DeliverySection:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be at least backoff_base_s")
        return self


class FormSection(_Section):
    """The referral form (aanmeldformulier) at /aanmelden."""

    enabled: bool = False
    # Shown on the form: the organisation the professional refers on behalf of.
    organisation_name: Annotated[str, Field(min_length=1, max_length=200)] = "uw organisatie"


class AdapterSettings(_Section):
    adapter: AdapterSection
    local: LocalSection
    webhook: WebhookSection | None = None
    filedrop: FiledropSection | None = None
    delivery: DeliverySection = DeliverySection()
    form: FormSection = FormSection()
    source: Path | None = None

    @model_validator(mode="after")
    def _somewhere_to_deliver(self) -> AdapterSettings:
        if self.webhook is None and self.filedrop is None:
            raise ValueError("give [webhook] url or [filedrop] dir: incoming items need a place")
        return self

    @property
    def database(self) -> Path:
        return self.adapter.data_dir / "adapter.sqlite3"

    @property
    def target(self) -> Literal["webhook", "filedrop"]:
        """Where inbox items go: the webhook when there is one, else the file drop."""
        return "webhook" if self.webhook is not None else "filedrop"


_PATHS = {
    "adapter": ("key_file", "data_dir"),
    "local": ("token_file", "attachment_dir"),
    "filedrop": ("dir",),
    "webhook": ("token_file",),
}


def load_adapter_settings(path: str | Path) -> AdapterSettings:
    """Read and validate an adapter's TOML file; ConfigError names the key that is wrong."""
    file = Path(path)
    raw = read_toml(file)
    base = file.parent.resolve()
    for section, keys in _PATHS.items():
        table = raw.get(section)
        if isinstance(table, dict):
            for key in keys:
                value = table.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    table[key] = str((base / value).resolve())
    return validated(AdapterSettings, file, raw)


def ensure_token(path: Path, key: str = "local.token_file") -> str:
    """The local API's bearer token: created (random, mode 0600) when the file is
    missing; refused when group or others may read or write it, or when it is empty."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask may only narrow; make it exact
            os.write(fd, (token + "\n").encode())
        finally:
            os.close(fd)
        return token
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{key}: {path} can be read by group or others (mode {mode:04o}); chmod 600 it"
        )
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ConfigError(f"{key}: {path} holds no token of at least 16 characters")
    return token


def render_adapter_config(
    *,
    org: str,
    hub_url: str,
    key_file: str,
    port: int = 8481,
    webhook_url: str | None = None,
    filedrop_dir: str | None = None,
    form: bool = False,
    max_attempts: int = 8,
    backoff_base_s: float = 1.0,
    backoff_max_s: float = 300.0,
) -> str:
    """The documented TOML that `init-adapter` writes."""
    webhook = (
        f'[webhook]\nurl = "{webhook_url}"            # the partner system; see docs/adapter.md\n'
        "timeout_s = 10.0\n"
        '# token_file = "webhook.token"     # sent as Authorization: Bearer (0600)\n'
        if webhook_url
        else '# [webhook]\n# url = "http://127.0.0.1:9000/zvh"  # the partner system\n'
    )
    filedrop = (
        f'[filedrop]\ndir = "{filedrop_dir}"            # in/, out/, done/, failed/\n'
        "scan_interval_s = 1.0\n"
        if filedrop_dir
        else '# [filedrop]\n# dir = "filedrop"                  # in/, out/, done/, failed/\n'
    )
    return f"""# zvh-gateway adapter configuration (see docs/adapter.md).
# Relative paths are relative to this file.

[adapter]
org = "{org}"                       # this organisation's id (PROTOCOL §1)
key_file = "{key_file}"             # its Ed25519 + X25519 private keys, mode 0600
hub_url = "{hub_url}"               # the region's hub
data_dir = "data"                   # adapter.sqlite3: idempotency keys, deliveries, dead letters
log_level = "info"
poll_wait_s = 20                    # inbox long-poll
keep_days = 30                      # delivered items and answered idempotency keys, then forgotten

[local]                             # the local API (/local/v1/) and the form (/aanmelden)
host = "127.0.0.1"                  # loopback, or an internal address
port = {port}
token_file = "local-api.token"      # bearer token, mode 0600 (created when missing)
attachment_dir = "outgoing"         # attachments are read only from inside this folder

{webhook}
{filedrop}
[delivery]                          # inbox items to the partner system
max_attempts = {max_attempts}                    # then the item is a dead letter
backoff_base_s = {backoff_base_s}               # exponential backoff with full jitter:
backoff_max_s = {backoff_max_s}               # wait uniform(0, min(max, base * 2^n))

[form]
enabled = {"true" if form else "false"}                    # the referral form at /aanmelden
"""


def settings_summary(settings: AdapterSettings) -> dict[str, Any]:
    """What the adapter prints at start: no secrets (the token never leaves its file)."""
    return {
        "org": settings.adapter.org,
        "hub_url": settings.adapter.hub_url,
        "local": f"http://{settings.local.host}:{settings.local.port}",
        "target": settings.target,
        "form": settings.form.enabled,
    }
