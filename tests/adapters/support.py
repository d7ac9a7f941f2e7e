"""Helpers for the adapter tests: adapters made with `init-adapter` and run as OS
processes (`python -m gateway adapter --config`), fake partner systems (small aiohttp
apps with their own records), and a local-API client that checks every request and
response against the adapter's own OpenAPI document.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
from aiohttp import web

from tests.conftest import free_port
from tests.e2e.hubproc import HubSetup, Processes, cli

READY_TIMEOUT_S = 20.0


@dataclass
class AdapterSetup:
    org: str
    dir: Path
    config: Path
    port: int
    token: str
    filedrop: Path | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def init_adapter(
    base: Path,
    hub: HubSetup,
    org: str,
    *,
    webhook_url: str | None = None,
    filedrop: bool = False,
    form: bool = False,
    max_attempts: int = 8,
    backoff_base_s: float = 0.2,
    backoff_max_s: float = 1.0,
) -> AdapterSetup:
    folder = base / f"adapter-{org}"
    port = free_port()
    args = [
        "init-adapter",
        "--dir",
        str(folder),
        "--org",
        org,
        "--hub-url",
        hub.url,
        "--key-file",
        str(hub.key_files[org]),
        "--port",
        str(port),
        "--max-attempts",
        str(max_attempts),
        "--backoff-base-s",
        str(backoff_base_s),
        "--backoff-max-s",
        str(backoff_max_s),
    ]
    if webhook_url is not None:
        args += ["--webhook-url", webhook_url]
    if filedrop:
        args += ["--filedrop-dir", "filedrop"]
    if form:
        args.append("--form")
    cli(*args)
    config = folder / "adapter.toml"
    # Tests poll the inbox briefly, so that a stop is quick.
    text = config.read_text(encoding="utf-8").replace("poll_wait_s = 20", "poll_wait_s = 2")
    config.write_text(text, encoding="utf-8")
    token_file = folder / "local-api.token"
    assert token_file.stat().st_mode & 0o077 == 0, "token file is not 0600"
    return AdapterSetup(
        org=org,
        dir=folder,
        config=config,
        port=port,
        token=token_file.read_text(encoding="utf-8").strip(),
        filedrop=folder / "filedrop" if filedrop else None,
    )


def set_config(setup: AdapterSetup, pattern: str, replacement: str) -> None:
    text = setup.config.read_text(encoding="utf-8")
    new = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    assert new != text, pattern
    setup.config.write_text(new, encoding="utf-8")


class AdapterProcess:
    def __init__(self, setup: AdapterSetup, procs: Processes) -> None:
        self.setup = setup
        self._procs = procs
        self.proc: Any = None
        self.starts = 0
        self.stdout = setup.dir / "adapter.stdout.log"
        self.stderr = setup.dir / "adapter.stderr.log"

    def start(self) -> None:
        self.proc = self._procs.spawn(
            [sys.executable, "-m", "gateway", "adapter", "--config", str(self.setup.config)],
            stdout=self.stdout,
            stderr=self.stderr,
            append=self.starts > 0,
        )
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"adapter exited {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.setup.url + "/healthz", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"adapter not ready:\n{self.logs()}")

    def stop(self) -> int:
        self.proc.terminate()
        return int(self.proc.wait(timeout=15.0))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10.0)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in (self.stdout, self.stderr) if p.exists()
        )


class OpenApiChecker:
    """Validates local-API requests and responses against the served document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.schemas = document["components"]["schemas"]

    def _schema(self, ref_or_schema: dict[str, Any]) -> dict[str, Any]:
        return {**ref_or_schema, "components": self.document["components"]}

    def check(self, path: str, status: int, request: Any, response: Any, content_type: str) -> None:
        operation = self.document["paths"][path]["post"]
        req_schema = operation["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator(self._schema(req_schema))
        # The document and the adapter agree: what the document refuses is a 400 here.
        if not validator.is_valid(request):
            assert status == 400, (path, status, "the document refuses this request")
        documented = operation["responses"].get(str(status))
        assert documented is not None, f"{path}: status {status} is not documented"
        media = "application/problem+json" if status >= 400 else "application/json"
        assert content_type == media, (path, status, content_type)
        resp_schema = documented["content"][media]["schema"]
        jsonschema.validate(
            response, self._schema(resp_schema), cls=jsonschema.Draft202012Validator
        )


@dataclass
class LocalClient:
    """The partner system's side of the local API (bearer token, idempotency keys)."""

    setup: AdapterSetup
    session: aiohttp.ClientSession
    checker: OpenApiChecker | None = None
    keys: int = 0

    async def post(
        self, path: str, body: Any, *, key: str | None = None, token: str | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if key is None:
            self.keys += 1
            key = f"{self.setup.org}-{self.keys}-{time.monotonic_ns()}"
        headers = {
            "Authorization": f"Bearer {token if token is not None else self.setup.token}",
            "Idempotency-Key": key,
        }
        async with self.session.post(self.setup.url + path, json=body, headers=headers) as resp:
            data = await resp.json(content_type=None)
            if self.checker is not None and resp.status != 401:
                self.checker.check(path, resp.status, body, data, resp.content_type)
            return resp.status, data, dict(resp.headers)

    async def ok(self, path: str, body: Any, **kw: Any) -> dict[str, Any]:
        status, data, _ = await self.post(path, body, **kw)
        assert status < 300, (path, status, data)
        return data


async def answers_nothing(item: dict[str, Any]) -> dict[str, Any] | None:
    """A partner system that takes every delivery and replies nothing."""
    return None


@dataclass
class FakeSystem:
    """A partner's own system behind the adapter's webhook: records every delivery
    (with its Idempotency-Key) and answers with `respond`."""

    name: str
    respond: Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]
    port: int = field(default_factory=free_port)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # When set, a delivery without `Authorization: Bearer <expected_token>` gets 401.
    expected_token: str | None = None
    _runner: web.AppRunner | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/zvh"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.expected_token is not None and (
            request.headers.get("Authorization") != f"Bearer {self.expected_token}"
        ):
            return web.Response(status=401)
        item = await request.json()
        key = request.headers["Idempotency-Key"]
        self.received.append((key, item))
        self._event.set()
        reply = await self.respond(item)
        if reply is None:
            return web.Response(status=204)
        return web.json_response(reply)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/zvh", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(
        self, predicate: Callable[[list[tuple[str, dict[str, Any]]]], bool], timeout_s: float = 30
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.received):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: condition not met; got {self.received}")
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=0.2)


async def wait_until(
    check: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def write_dropped(folder: Path, name: str, text: str) -> Path:
    """As a legacy system must: write under a hidden name, then rename."""
    tmp = folder / f".{name}.part"
    tmp.write_text(text, encoding="utf-8")
    final = folder / name
    tmp.rename(final)
    return final


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
