"""The real Prometheus scrapes a hub process with deploy/prometheus.yml and loads
deploy/alerts.yml; its query API then returns the hub's series.

Prometheus comes from Debian's `prometheus` package, which `make test` installs (the
`promtool` target). This test installs nothing: without /usr/bin/prometheus it fails,
saying so.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.client import HubClient
from tests.conftest import free_port
from tests.e2e.hubproc import Processes
from tests.ops.support import POLICE, OpsHub, http_get, make_ops_hub

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = Path("/usr/bin/prometheus")
SCRAPE_TIMEOUT_S = 30.0


def scrape_config(hub: OpsHub, base: Path) -> Path:
    """deploy/prometheus.yml with the hub's metrics port as target, 1 s intervals, and
    the alertmanager on a closed loopback port (so nothing leaves the machine)."""
    text = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8")
    replacements = {
        '"hub:9080"': f'"127.0.0.1:{hub.metrics_port}"',
        '"alertmanager:9093"': f'"127.0.0.1:{free_port()}"',
        "scrape_interval: 15s": "scrape_interval: 1s",
        "scrape_timeout: 10s": "scrape_timeout: 1s",
        "evaluation_interval: 15s": "evaluation_interval: 1s",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"deploy/prometheus.yml no longer has {old}"
        text = text.replace(old, new)
    config = base / "prometheus.yml"
    config.write_text(text, encoding="utf-8")
    shutil.copy(DEPLOY / "alerts.yml", base / "alerts.yml")
    return config


def query(api: str, expr: str) -> list[dict[str, Any]]:
    url = f"{api}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        data = json.loads(resp.read())
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def wait_for_value(api: str, expr: str, prom: subprocess.Popen[bytes], log: Path) -> float:
    """The first non-zero value of `expr`, once Prometheus has scraped it."""
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        assert prom.poll() is None, f"prometheus exited {prom.returncode}:\n{log.read_text()}"
        try:
            result = query(api, expr)
        except (urllib.error.URLError, OSError) as exc:  # not listening yet
            last = exc
        else:
            last = result
            if result and float(result[0]["value"][1]) != 0:
                return float(result[0]["value"][1])
        time.sleep(0.25)
    raise AssertionError(f"no non-zero {expr} within {SCRAPE_TIMEOUT_S} s (last: {last})")


async def signed_directory_read(hub: OpsHub) -> None:
    async with HubClient(hub.url, hub.keys[POLICE]) as police:
        await police.directory()


def test_prometheus_scrapes_the_hub_with_the_deploy_config(
    tmp_path: Path, procs: Processes
) -> None:
    assert PROMETHEUS.is_file(), (
        f"{PROMETHEUS} is missing: `make test` installs Debian's prometheus package "
        "(or run 'sudo apt-get install prometheus')"
    )
    hub = make_ops_hub(tmp_path, procs)
    asyncio.run(signed_directory_read(hub))  # a signed request, so a 200 is counted
    for _ in range(3):
        assert http_get(hub.url + "/healthz")[0] == 200

    base = tmp_path / "prometheus"
    base.mkdir()
    config = scrape_config(hub, base)
    port = free_port()
    log = base / "prometheus.log"
    prom = procs.spawn(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={base / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=base / "prometheus.out",
        stderr=log,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_value(api, 'up{job="zvh-hub"}', prom, log) == 1
        info = query(api, 'zvh_gateway_build_info{job="zvh-hub"}')
        assert info, "no build info"
        assert info[0]["metric"]["role"] == "hub"
        assert float(info[0]["value"][1]) == 1
        requests = 'sum(zvh_gateway_http_requests_total{job="zvh-hub", route="/healthz"})'
        assert wait_for_value(api, requests, prom, log) >= 3
        signed = query(
            api, 'zvh_gateway_http_requests_total{route="/api/v1/directory", status="200"}'
        )
        assert signed
        assert float(signed[0]["value"][1]) >= 1
        assert wait_for_value(api, "zvh_gateway_ledger_self_check_success", prom, log) == 1
        assert wait_for_value(api, "zvh_gateway_ledger_checkpoint_timestamp_seconds", prom, log)

        # The real server loaded the alert rules, and none fires on a healthy hub.
        with urllib.request.urlopen(f"{api}/api/v1/rules", timeout=5) as resp:
            groups = json.loads(resp.read())["data"]["groups"]
        names = {rule["name"] for g in groups for rule in g["rules"]}
        assert {"ZvhHubDown", "ZvhLedgerCheckpointStale", "ZvhKeyExpiringSoon"} <= names
        assert [r for g in groups for r in g["rules"] if r["state"] == "firing"] == []
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            rc = prom.wait(timeout=15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait(timeout=5)
            raise AssertionError("prometheus did not stop within 15 s of SIGTERM") from None
    assert rc == 0, log.read_text()
