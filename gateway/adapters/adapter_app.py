"""The adapter's local HTTP API (`/local/v1/`), for the partner's own system.

Every `/local/v1/` call needs `Authorization: Bearer <token>` (the token file's
content, compared in constant time) except the OpenAPI document, which holds no
secret. Every POST needs an `Idempotency-Key`. Errors are RFC 9457 problems with
field paths and never echo a submitted value. The app is served on loopback by
default (`[local] host`); `/aanmelden` (the referral form) lives on the same
listener, see `referral_form`.

Must not: log a body, a header value, a token or a path with ids in it.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.adapters import local_models as m
from gateway.adapters.delivery import Deliverer
from gateway.adapters.local_openapi import openapi_document
from gateway.adapters.outbound import Outbound, problem_of
from gateway.crypto.encoding import sha256
from gateway.errors import InvalidRequest, NotFound, ProblemError, Unauthenticated
from gateway.storage.adapter_store import AdapterStore

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROBLEM_TYPE = "urn:zvh-gateway:problem:"
OPENAPI_PATH = "/local/v1/openapi.json"
API_PREFIX = "/local/v1/"
KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass(slots=True)
class LocalApi:
    """What the handlers need; built once by `runner.build_adapter`."""

    outbound: Outbound
    store: AdapterStore
    deliverer: Deliverer
    token: str
    secure_cookies: bool = False
    # Whether the background tasks (poller, deliverer, file drop) still run.
    alive: Callable[[], bool] | None = None


LOCAL = web.AppKey("local", LocalApi)


def problem_response(
    status: int, code: str, title: str, detail: str, extra: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **(extra or {}),
    }
    return web.json_response(body, status=status, content_type="application/problem+json")


_HTTP_CODES = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


def _route(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: errors to RFC 9457, security headers, one access-log line (route
    template and status only)."""
    start = time.monotonic()
    try:
        response = await handler(request)
    except ProblemError as exc:
        response = problem_response(exc.status, exc.code, exc.title, exc.detail, dict(exc.extra()))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http-error")
        response = problem_response(exc.status, code, exc.reason, exc.reason)
    except Exception:
        log.exception("unhandled error", extra={"route": _route(request)})
        response = problem_response(
            500, "internal-error", "Internal error", "The adapter could not handle this request."
        )
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    log.info(
        "request",
        extra={
            "route": _route(request),
            "status": response.status,
            "duration_ms": round((time.monotonic() - start) * 1000, 3),
        },
    )
    return response


@web.middleware
async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX) or request.path == OPENAPI_PATH:
        return await handler(request)
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    expected = sha256(request.app[LOCAL].token.encode())
    # Compare digests, so both sides have one length whatever was sent, in constant time.
    ok = scheme.lower() == "bearer" and hmac.compare_digest(
        sha256(token.strip().encode()), expected
    )
    if not ok:
        raise _TokenRequired()
    return await handler(request)


class _TokenRequired(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("no or wrong bearer token")
        self.detail = "A valid bearer token is required."


def field_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic's errors as `{loc, msg, type}`, without the submitted values."""
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]


async def read_model(request: web.Request, model: type[BaseModel]) -> BaseModel:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest(
            "The body is not JSON.", errors=[{"loc": ["body"], "msg": "not JSON", "type": "json"}]
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest("The request does not validate.", errors=field_errors(exc)) from None


def idempotency_key(request: web.Request) -> str:
    key = request.headers.get(KEY_HEADER, "")
    if not (1 <= len(key) <= 200) or not all(33 <= ord(c) <= 126 for c in key):
        raise InvalidRequest(
            "Every POST needs an Idempotency-Key header.",
            errors=[
                {
                    "loc": ["header", KEY_HEADER],
                    "msg": "required: 1-200 printable ASCII characters",
                    "type": "missing" if not key else "value_error",
                }
            ],
        )
    return key


def operation_handler(name: str, model: type[BaseModel]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        key = idempotency_key(request)
        body = await read_model(request, model)
        api = request.app[LOCAL]
        if not api.outbound.supports(name):
            raise NotFound(f"{name} are not available in this release of the adapter.")
        outcome = await api.outbound.perform(name, key, body)
        response = web.json_response(
            outcome.body,
            status=outcome.status,
            content_type="application/problem+json"
            if outcome.status >= 400
            else "application/json",
        )
        if outcome.replayed:
            response.headers[REPLAYED_HEADER] = "true"
        return response

    return handle


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document())


async def dead_letters(request: web.Request) -> web.StreamResponse:
    items = await request.app[LOCAL].store.dead_letters()
    return web.json_response({"dead_letters": [d.summary() for d in items]})


async def retry_dead_letter(request: web.Request) -> web.StreamResponse:
    idempotency_key(request)  # required on every POST; retrying twice is harmless anyway
    try:
        message_id = int(request.match_info["message_id"])
    except ValueError:
        raise InvalidRequest(
            "Bad message id.",
            errors=[{"loc": ["path", "message_id"], "msg": "an integer", "type": "int"}],
        ) from None
    api = request.app[LOCAL]
    retried = await api.store.retry_dead(message_id, api.outbound.clock.now_ms())
    if not retried:
        raise NotFound("No dead letter with this message id.")
    api.deliverer.wake()
    return web.json_response({"retried": retried})


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 while the adapter works; 503 when a background task has stopped (a probe
    should then restart the process)."""
    alive = request.app[LOCAL].alive
    if alive is not None and not alive():
        return web.json_response({"status": "failing"}, status=503)
    return web.json_response({"status": "ok"})


def build_local_app(api: LocalApi, *, max_body_bytes: int) -> web.Application:
    app = web.Application(middlewares=[problems, bearer], client_max_size=max_body_bytes)
    app[LOCAL] = api
    for name, path, model, _response, _status, _summary in m.OPERATIONS:
        app.router.add_post(path, operation_handler(name, model))
    app.router.add_get(OPENAPI_PATH, openapi)
    app.router.add_get("/local/v1/dead-letters", dead_letters)
    app.router.add_post("/local/v1/dead-letters/{message_id}/retry", retry_dead_letter)
    app.router.add_get("/healthz", healthz)
    return app


__all__ = ["LOCAL", "LocalApi", "build_local_app", "problem_of"]
