"""The hub's client of the national services: the pseudonymiser and the index.

Every call is signed as the hub (PROTOCOL §2, `@authority` = the service's own
authority from its configured URL), bounded by the hub's deadline (`timeout_s`, the
whole call: connect, send, answer) and measured per service and operation. A call
that does not succeed in time raises `ServiceUnavailable` (the reason, one of
timeout, connect, status, response, goes to the log and the metrics, never to a
partner); a 429 from the service raises `RateLimited` with its Retry-After.
Responses are validated with the wire models before anything is used.

Must not log or put in an exception a pid or a blinded element.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ValidationError
from yarl import URL

from gateway.clock import Clock
from gateway.crypto.httpsig import normalise_authority, sign_request
from gateway.crypto.keys import OrgKeys
from gateway.errors import RateLimited, ServiceUnavailable
from gateway.metrics import Metrics
from gateway.models import (
    EvaluateOut,
    IndexLookupOut,
    IndexPutOut,
    IndexRegistration,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
_MAX_RESPONSE = 1 << 20
PSEUDONYMISER = "pseudonymiser"
INDEX = "index"


class _Failed(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _Service:
    def __init__(self, name: str, url: str) -> None:
        parts = urlsplit(url)
        self.name = name
        self.base = url.rstrip("/")
        self.authority = normalise_authority(parts.netloc, parts.scheme)


class NationalClient:
    def __init__(
        self,
        keys: OrgKeys,
        clock: Clock,
        metrics: Metrics,
        *,
        pseudonymiser_url: str,
        index_url: str,
        timeout_s: float,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._metrics = metrics
        self._services = {
            PSEUDONYMISER: _Service(PSEUDONYMISER, pseudonymiser_url),
            INDEX: _Service(INDEX, index_url),
        }
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30),
            )
        return self._session

    # -- the calls -------------------------------------------------------------------

    async def evaluate(self, blinded: list[str]) -> list[str]:
        """BlindEvaluate at the pseudonymiser; as many elements back as were sent."""
        out = await self._call(
            PSEUDONYMISER, "evaluate", "POST", "/api/v1/oprf/evaluate", {"blinded": blinded}
        )
        result = self._parse(EvaluateOut, out, PSEUDONYMISER, "evaluate")
        if len(result.evaluated) != len(blinded):
            raise self._failed(PSEUDONYMISER, "evaluate", _Failed("response"))
        return list(result.evaluated)

    async def register(self, pid: str, registration: IndexRegistration) -> IndexRegistration:
        """PUT this hub's registration of `pid`; returns what the index stored."""
        body = registration.model_dump(mode="json")
        out = await self._call(INDEX, "register", "PUT", f"/api/v1/index/registrations/{pid}", body)
        return self._parse(IndexPutOut, out, INDEX, "register").registration

    async def delete(self, pid: str) -> None:
        await self._call(INDEX, "delete", "DELETE", f"/api/v1/index/registrations/{pid}", None)

    async def lookup(self, pid: str) -> list[IndexRegistration]:
        out = await self._call(INDEX, "lookup", "POST", "/api/v1/index/lookups", {"pid": pid})
        return list(self._parse(IndexLookupOut, out, INDEX, "lookup").registrations)

    # -- plumbing --------------------------------------------------------------------

    def _parse(self, model: type[M], data: bytes, service: str, operation: str) -> M:
        try:
            return model.model_validate_json(data)
        except ValidationError:
            raise self._failed(service, operation, _Failed("response")) from None

    def _failed(self, service: str, operation: str, exc: _Failed) -> ServiceUnavailable:
        self._metrics.federation_errors.labels(service, operation, exc.reason).inc()
        log.warning(
            "national service call failed",
            extra={
                "service": service,
                "operation": operation,
                "reason": exc.reason,
                "status": exc.status,
            },
        )
        return ServiceUnavailable(f"The national {service} did not answer in time.")

    async def _call(
        self, name: str, operation: str, method: str, path: str, body: dict[str, Any] | None
    ) -> bytes:
        service = self._services[name]
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = sign_request(
            keys=self._keys,
            method=method,
            authority=service.authority,
            path=path,
            query="",
            body=raw,
            content_type="application/json" if raw else None,
            created=self._clock.now_ms() // 1000,
        )
        if raw:
            headers["Content-Type"] = "application/json"
        url = URL(service.base + path, encoded=True)
        start = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._http().request(
                    method, url, data=raw or None, headers=headers
                ) as resp:
                    data = await resp.content.read(_MAX_RESPONSE + 1)
                    if resp.status == 429:
                        retry = resp.headers.get("Retry-After", "1")
                        raise RateLimited(int(retry) if retry.isdigit() else 1)
                    if resp.status >= 300:
                        raise _Failed("status", resp.status)
                    if len(data) > _MAX_RESPONSE:
                        raise _Failed("response", resp.status)
                    return data
        except RateLimited:
            self._metrics.federation_errors.labels(name, operation, "status").inc()
            raise
        except _Failed as exc:
            raise self._failed(name, operation, exc) from None
        except TimeoutError:
            raise self._failed(name, operation, _Failed("timeout")) from None
        except aiohttp.ClientResponseError as exc:
            raise self._failed(name, operation, _Failed("response", exc.status)) from None
        except (aiohttp.ClientError, OSError):
            raise self._failed(name, operation, _Failed("connect")) from None
        finally:
            self._metrics.federation_latency.labels(name, operation).observe(
                time.monotonic() - start
            )
