"""The files in deploy/ are consistent with the code and with each other.

promtool checks the Prometheus configuration, the rules and their unit tests (as
`make test` does); every alert has a firing and a not-firing test; every metric name
that an alert, a test, the dashboard or docs/operations.md uses is one the hub
exposes; the example hub configuration validates; the units and the image keep
their hardening.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bzvh_gateway_[a-z0-9_]+")


def exposed_names() -> set[str]:
    names = set()
    for family in Metrics("hub").registry.collect():
        names.add(family.name)
        suffixes = {
            "counter": ("_total",),
            "info": ("_info",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ())
        names.update(family.name + s for s in suffixes)
    return names


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    assert tool is not None, (
        "promtool is missing: `make test` installs Debian's prometheus package "
        "(or run 'sudo apt-get install prometheus')"
    )
    proc = subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "deploy/prometheus.yml"),
        ("check", "rules", "deploy/alerts.yml"),
        ("test", "rules", "deploy/alerts.test.yml"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args: tuple[str, ...]) -> None:
    assert "SUCCESS" in promtool(*args)


def test_every_alert_has_a_firing_and_a_not_firing_test() -> None:
    alerts = re.findall(r"^\s+- alert: (\w+)$", (DEPLOY / "alerts.yml").read_text(), re.M)
    assert len(alerts) == len(set(alerts)) >= 15
    cases = re.findall(
        r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", (DEPLOY / "alerts.test.yml").read_text()
    )
    firing = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    assert set(alerts) - firing == set(), "alerts without a firing test"
    assert set(alerts) - quiet == set(), "alerts without a not-firing test"
    assert (firing | quiet) - set(alerts) == set(), "tests of alerts that do not exist"


@pytest.mark.parametrize(
    "path",
    [
        "deploy/alerts.yml",
        "deploy/alerts.test.yml",
        "deploy/grafana/zvh-gateway.json",
        "docs/operations.md",
    ],
)
def test_every_metric_name_used_is_exposed_by_the_hub(path: str) -> None:
    used = set(METRIC.findall((ROOT / path).read_text(encoding="utf-8")))
    assert used, f"{path} names no metric"
    assert used - exposed_names() == set()


def test_the_dashboard_is_provisioned_and_well_formed() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "zvh-gateway.json").read_text())
    assert dashboard["uid"] == "zvh-gateway-hub"
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    queries = [t for p in panels if p["type"] != "row" for t in p["targets"]]
    assert len(queries) >= 30
    assert all(t["expr"] and t["datasource"]["uid"] == "${datasource}" for t in queries)
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert "uid: prometheus" in (provisioning / "datasources" / "prometheus.yml").read_text()
    assert (
        "/var/lib/grafana/dashboards"
        in (provisioning / "dashboards" / "zvh-gateway.yml").read_text()
    )
    compose = (DEPLOY / "compose.yaml").read_text()
    assert "./grafana/zvh-gateway.json:/var/lib/grafana/dashboards/zvh-gateway.json:ro" in compose


@pytest.mark.parametrize("role", ["pseudonymiser", "index"])
def test_the_example_national_configs_validate(role: str) -> None:
    assert load_settings(DEPLOY / "examples" / f"{role}.toml").node.role == role


def test_the_example_hub_config_validates() -> None:
    settings = load_settings(DEPLOY / "examples" / "hub.toml")
    assert settings.node.role == "hub"
    assert settings.http.metrics_port == 9080
    assert settings.node.database == Path("/var/lib/zvh-gateway/hub.sqlite3")
    # What the Dockerfile's health check and prometheus.yml expect of it.
    assert "9080" in (DEPLOY / "Dockerfile").read_text()
    assert '"hub:9080"' in (DEPLOY / "prometheus.yml").read_text()


HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ReadWritePaths=",
    "PrivateTmp=yes",
    "ProtectHome=yes",
    "RestrictAddressFamilies=",
    "CapabilityBoundingSet=\n",
    "SystemCallFilter=@system-service",
)


@pytest.mark.parametrize(
    "unit",
    [
        "zvh-gateway-hub.service",
        "zvh-gateway-pseudonymiser.service",
        "zvh-gateway-index.service",
        "zvh-gateway-backup.service",
    ],
)
def test_the_systemd_units_are_hardened_and_unprivileged(unit: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    missing = [option for option in HARDENING if option not in text]
    assert missing == []
    assert "User=zvh-gateway" in text or "DynamicUser=yes" in text
    assert "User=root" not in text


def test_the_hub_unit_stops_gracefully() -> None:
    text = (DEPLOY / "systemd" / "zvh-gateway-hub.service").read_text()
    assert "KillSignal=SIGTERM" in text
    timeout = re.search(r"^TimeoutStopSec=(\d+)$", text, re.M)
    assert timeout is not None
    assert int(timeout[1]) > 10  # the hub exits within 10 s of SIGTERM
    assert "RestartPreventExitStatus=2" in text


def test_the_image_runs_unprivileged_with_a_health_check() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    user = re.search(r"^USER (\S+)$", text, re.M)
    assert user is not None
    assert user[1].split(":")[0] not in ("root", "0")
    assert "libsodium23" in text
    assert re.search(r"^HEALTHCHECK .*\n.*ZVH_HEALTH_URL", text, re.M)
    assert "ZVH_HEALTH_URL=http://127.0.0.1:9080/healthz" in text


def test_compose_has_every_role_and_the_monitoring() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    for service in ("hub", "pseudonymiser", "index", "prometheus", "alertmanager", "grafana"):
        assert re.search(rf"^  {service}:$", text, re.M), service
    # The national services are the national operator's: not started by default.
    for service in ("pseudonymiser", "index"):
        block = text.split(f"\n  {service}:\n", 1)[1].split("\n\n", 1)[0]
        assert 'profiles: ["national"]' in block, service
