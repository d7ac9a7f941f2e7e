"""HTTP routes of the hub's signed API (PROTOCOL §7). Thin: parse, call a service,
render. Validation errors list field paths and never echo the submitted values."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequest, NotFound
from gateway.models import (
    AckBatch,
    Answer,
    AnswerBatch,
    CaseCreate,
    DatRequest,
    Empty,
    ParticipantAdd,
)
from gateway.services.directory import org_json
from gateway.services.inbox import messages_body
from gateway.services.outcome import Done
from gateway.web.middleware import problem_of
from gateway.web.state import BODY, HUB, auth_of

M = TypeVar("M", bound=BaseModel)
routes = web.RouteTableDef()


def parse(request: web.Request, model: type[M]) -> tuple[M, dict[str, Any]]:
    body: bytes = request[BODY]
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(
            "The body is not JSON.", errors=[{"loc": [], "msg": "not JSON"}]
        ) from exc
    if not isinstance(raw, dict):
        raise InvalidRequest(
            "The body must be a JSON object.", errors=[{"loc": [], "msg": "not an object"}]
        )
    try:
        return model.model_validate_json(body), raw
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise InvalidRequest("The request does not validate.", errors=errors) from exc


def done(result: Done) -> web.Response:
    return web.json_response(result.body, status=result.status)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    ready = request.app[HUB].ready
    return web.json_response({"ready": ready}, status=200 if ready else 503)


@routes.get("/api/v1/directory")
async def directory(request: web.Request) -> web.Response:
    auth_of(request)
    orgs = request.app[HUB].directory.orgs
    return web.json_response({"organisations": [org_json(o) for o in orgs.values()]})


@routes.post("/api/v1/cases")
async def register_case(request: web.Request) -> web.Response:
    req, _ = parse(request, CaseCreate)
    return done(await request.app[HUB].cases.register(auth_of(request), req))


@routes.post("/api/v1/cases/{case_ref}/participants")
async def add_participant(request: web.Request) -> web.Response:
    req, _ = parse(request, ParticipantAdd)
    hub = request.app[HUB]
    return done(
        await hub.cases.add_participant(auth_of(request), request.match_info["case_ref"], req.org)
    )


@routes.post("/api/v1/cases/{case_ref}/close")
async def close_case(request: web.Request) -> web.Response:
    parse(request, Empty)
    hub = request.app[HUB]
    return done(await hub.cases.close(auth_of(request), request.match_info["case_ref"]))


@routes.post("/api/v1/dat-requests")
async def dat_request(request: web.Request) -> web.Response:
    req, raw = parse(request, DatRequest)
    return done(await request.app[HUB].exchanges.submit_dat(auth_of(request), req, raw))


@routes.post("/api/v1/exchanges/{exchange_id}/answers")
async def answer(request: web.Request) -> web.Response:
    req, raw = parse(request, Answer)
    hub = request.app[HUB]
    return done(
        await hub.exchanges.answer(auth_of(request), request.match_info["exchange_id"], req, raw)
    )


@routes.post("/api/v1/answers")
async def answer_batch(request: web.Request) -> web.Response:
    """Extension: up to 100 answers in one request; 200 with a result per answer, in
    the order given: `{exchange_id, status: 202, ledger}` or `{exchange_id, status,
    problem}` (the RFC 9457 body the single-answer endpoint would have returned)."""
    req, raw = parse(request, AnswerBatch)
    hub = request.app[HUB]
    items = list(zip(req.answers, raw["answers"], strict=True))
    outcomes = await hub.exchanges.answer_many(auth_of(request), items)
    results: list[dict[str, Any]] = []
    for item, outcome in zip(req.answers, outcomes, strict=True):
        if isinstance(outcome, Done):
            results.append(
                {"exchange_id": item.exchange_id, "status": outcome.status, **outcome.body}
            )
            step = "accepted"
        else:
            results.append(
                {
                    "exchange_id": item.exchange_id,
                    "status": outcome.status,
                    "problem": problem_of(outcome),
                }
            )
            step = "denied" if outcome.status == 403 else "error"
        hub.metrics.exchanges.labels("answer", step).inc()
    return web.json_response({"results": results})


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise InvalidRequest(
            f"Query parameter {name} must be an integer {low}..{high}.",
            errors=[{"loc": ["query", name], "msg": "out of range"}],
        )
    return int(value)


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


@routes.get("/api/v1/inbox")
async def inbox(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    wait = _int_param(request, "wait", 0, 0, hub.inbox.max_wait_s)
    limit = _int_param(request, "limit", 100, 1, 1000)
    messages = await hub.inbox.fetch(
        auth_of(request), wait_s=wait, limit=limit, connected=lambda: _connected(request)
    )
    return web.Response(body=messages_body(messages), content_type="application/json")


@routes.post("/api/v1/inbox/ack")
async def ack_batch(request: web.Request) -> web.Response:
    req, _ = parse(request, AckBatch)
    acked = await request.app[HUB].inbox.ack(auth_of(request), list(req.message_ids), strict=False)
    return web.json_response({"acked": acked})


@routes.post("/api/v1/inbox/{message_id}/ack")
async def ack_one(request: web.Request) -> web.Response:
    parse(request, Empty)
    raw_id = request.match_info["message_id"]
    if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18:
        raise NotFound("Unknown message.")
    acked = await request.app[HUB].inbox.ack(auth_of(request), [int(raw_id)], strict=True)
    return web.json_response({"acked": acked})
