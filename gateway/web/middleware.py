"""The only place where errors become HTTP responses (RFC 9457), plus request
authentication, per-route metrics, the access log and the end of long-polls at
shutdown.

A partner never sees an internal reason: 401s are one opaque problem, 500s say
nothing but "internal error", and no library message or partner error body is
forwarded. Problem bodies never echo request values (they may hold personal data).
The access log names the route template, never the path (paths hold case refs and
exchange ids), and never the query string or the body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gateway.errors import DenyCode, Forbidden, ProblemError, RateLimited, Unauthenticated
from gateway.logs import ACCESS_LOGGER, new_request_id, request_context
from gateway.services.auth import RequestAuth
from gateway.web.state import AUTH, BODY, NODE, NodeParts

log = logging.getLogger(__name__)
access = logging.getLogger(ACCESS_LOGGER)
REQUEST_ID_HEADER = "X-Request-Id"
# Probes hit these every few seconds: their lines go to debug, not info.
_PROBES = frozenset({"/healthz", "/readyz"})
# Set when the hub starts to stop (its listener is closed already).
DRAINING = web.AppKey("draining", asyncio.Event)
LONG_POLL_ROUTES = frozenset({"/api/v1/inbox"})
# PUT routes whose body the handler streams (and checks against its digest) itself.
STREAMED_ROUTES = frozenset({"/api/v1/blobs"})
# Requests (by route template) whose handlers verify envelope signatures before any
# write: their own signature goes to the verifier with those
# (RequestAuth.verify_along), one hand-over; a handler with no envelope to verify
# settles it on its own (RequestAuth.confirm) before it writes.
ENVELOPE_ROUTES = frozenset(
    {
        "/api/v1/dat-requests",
        "/api/v1/wat-requests",
        "/api/v1/messages",
        "/api/v1/referrals",
        "/api/v1/exchanges/{exchange_id}/answers",
    }
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PREFIXES = ("/api/v1/ledger/checkpoint", "/api/v1/ledger/proofs/")
# People reach these with a login session (review_routes.py), never with a signature.
REVIEW_API_PREFIX = "/api/v1/review/"
PROBLEM_TYPE = "urn:zvh-gateway:problem:"


def problem_body(
    status: int, code: str, title: str, detail: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if extra:
        body.update(extra)
    return body


def problem_response(
    status: int, code: str, title: str, detail: str, extra: dict[str, Any] | None = None
) -> web.Response:
    body = problem_body(status, code, title, detail, extra)
    return web.json_response(body, status=status, content_type="application/problem+json")


def problem_of(exc: ProblemError) -> dict[str, Any]:
    """The RFC 9457 body of an error (also used per item of a batch's results)."""
    extra = dict(exc.extra())
    if exc.ledger is not None:
        extra["ledger"] = exc.ledger
    return problem_body(exc.status, exc.code, exc.title, exc.detail, extra)


def render_problem(exc: ProblemError) -> web.Response:
    response = web.json_response(
        problem_of(exc), status=exc.status, content_type="application/problem+json"
    )
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


_HTTP_CODES = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as exc:
        if exc.status == 403:
            request.app[NODE].metrics.policy_decisions.labels("deny", exc.code).inc()
        if isinstance(exc, Unauthenticated):
            log.info(
                "request not authenticated", extra={"reason": exc.reason, "route": _route(request)}
            )
        return render_problem(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http-error")
        return problem_response(exc.status, code, exc.reason, exc.reason)
    except Exception:
        log.exception("unhandled error", extra={"route": _route(request)})
        return problem_response(
            500, "internal-error", "Internal error", "The hub could not handle this request."
        )


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(request: web.Request) -> str:
    """A closed set: a client may send any token as its method."""
    return request.method if request.method in _METHODS else "OTHER"


def _route(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: give the request an id of the hub's own (a client's X-Request-Id is
    ignored: it could carry anything), return it as `X-Request-Id`, and log one line."""
    request_id = new_request_id()
    start = time.monotonic()
    status = 500
    with request_context(request_id):
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = request_id
            return response
        except web.HTTPException as exc:  # redirects and the like, raised past `problems`
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = request_id
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away (or the hub stopped) before the answer
            raise
        finally:
            route = _route(request)
            auth = request.get(AUTH)
            access.log(
                logging.DEBUG if route in _PROBES else logging.INFO,
                "request",
                extra={
                    "method": _method(request),
                    "route": route,
                    "status": status,
                    "duration_ms": round((time.monotonic() - start) * 1000, 3),
                    "org": auth.org if auth is not None and auth.verified else None,
                },
            )


# Exchange steps by route template (a closed set), for the step counters.
STEP_ROUTES = {
    "/api/v1/dat-requests": "dat-request",
    "/api/v1/wat-requests": "wat-request",
    "/api/v1/exchanges/{exchange_id}/answers": "answer",
    "/api/v1/cases": "case-register",
    "/api/v1/protocols/{protocol_id}/accessions": "accession",
    "/api/v1/declarations": "declaration",
    "/api/v1/messages": "message",
    "/api/v1/referrals": "referral",
}


@web.middleware
async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        m = request.app[NODE].metrics
        route = _route(request)
        method = _method(request)
        m.http_requests.labels(route, method, str(status)).inc()
        m.http_latency.labels(route, method).observe(time.monotonic() - start)
        step = STEP_ROUTES.get(route) if request.method == "POST" else None
        if step is not None:
            outcome = "accepted" if status < 300 else ("denied" if status == 403 else "error")
            m.exchanges.labels(step, outcome).inc()
            if status < 300:
                m.policy_decisions.labels("allow", "").inc()


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not path.startswith("/api/v1/") or path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    if path.startswith(REVIEW_API_PREFIX):
        # PROTOCOL §2: organisation signatures are refused here, not verified, so a
        # partner's key can never stand in for a person's session.
        if "Signature" in request.headers or "Signature-Input" in request.headers:
            raise Forbidden(DenyCode.FORBIDDEN_ROLE, "The review API is for people, not keys.")
        return await handler(request)
    hub = request.app[NODE]
    # An attachment blob is streamed to disk by its handler, never read whole here:
    # the signature is checked over the Content-Digest as sent, and the handler
    # compares the digest of what it streamed at the end (PROTOCOL §4.1).
    streamed = request.method == "PUT" and path in STREAMED_ROUTES
    body = b"" if streamed else await request.read()
    raw_path, _, raw_query = request.raw_path.partition("?")
    headers = request.headers

    def joined(name: str) -> str | None:
        values = headers.getall(name, [])
        return ", ".join(values) if values else None

    try:
        auth = await hub.authenticator.authenticate(
            method=request.method,
            path=raw_path,
            query=raw_query,
            body=body,
            signature_input=joined("Signature-Input"),
            signature=joined("Signature"),
            content_digest=joined("Content-Digest"),
            content_type=joined("Content-Type"),
            streamed=streamed,
            defer=request.method == "POST" and _route(request) in ENVELOPE_ROUTES,
        )
    except ProblemError as exc:
        hub.metrics.auth_failures.labels(exc.code).inc()
        raise
    request[AUTH] = auth
    request[BODY] = body
    if request.method == "GET":
        # Reads (long polls above all) make their nonce durable first.
        await hub.db.write("nonce", auth.persist)
    try:
        response = await handler(request)
    except Exception:
        # A put-off signature check outranks whatever the handler found first.
        await _confirm(hub, auth)
        raise
    else:
        await _confirm(hub, auth)
        return response
    finally:
        if auth.verified and not auth.persisted:
            await hub.db.write("nonce", auth.persist)


async def _confirm(hub: NodeParts, auth: RequestAuth) -> None:
    try:
        await auth.confirm()
    except ProblemError as exc:
        hub.metrics.auth_failures.labels(exc.code).inc()
        raise


@web.middleware
async def long_polls(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Innermost: a long-poll waiting when the hub starts to stop answers at once with
    no messages, as if its wait had run out. Otherwise the graceful stop would wait
    the whole shutdown timeout for it, and then as long again to cut it off.

    Cancelling the fetch is safe: it leases messages only in the step that returns
    them, and an unleased message is simply delivered by the next poll.
    """
    if request.method != "GET" or _route(request) not in LONG_POLL_ROUTES:
        return await handler(request)
    draining = request.app[DRAINING]
    fetch = asyncio.ensure_future(handler(request))
    stopping = asyncio.ensure_future(draining.wait())
    try:
        await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not fetch.done():
            fetch.cancel()
            try:
                return await fetch
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                return web.json_response({"messages": []})
        return fetch.result()
    finally:
        for task in (fetch, stopping):
            task.cancel()
