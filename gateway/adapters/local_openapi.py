"""The local API's OpenAPI 3.1 document, generated from the pydantic models in
`local_models` (JSON Schema 2020-12 is OpenAPI 3.1's schema dialect), so that what the
document promises is what the adapter validates."""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.adapters import local_models as m

REF = "#/components/schemas/{model}"
_PROBLEM = "application/problem+json"


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [op[2] for op in m.OPERATIONS] + [op[3] for op in m.OPERATIONS]
    models += [m.Problem, m.DeadLetters, m.Retried, m.WebhookItem, m.WebhookReply]
    mode: Literal["validation"] = "validation"
    pairs = [(model, mode) for model in dict.fromkeys(models)]
    _, top = models_json_schema(pairs, ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_PROBLEM: {"schema": _ref(m.Problem)}}}


_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "Chosen by the caller, unique per request (1-200 printable ASCII "
    "characters). The same key with the same body gives the stored response, also after "
    "a restart of the adapter; with a different body it is 409 idempotency-key-reused.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"},
}
_ERRORS = {
    "400": _problem("The request does not validate (`errors` lists field paths)."),
    "401": _problem("No or a wrong bearer token."),
    "403": _problem("Refused by the hub (policy, membership, participation)."),
    "404": _problem("Unknown case, exchange or organisation."),
    "409": _problem("Idempotency key reused or in use, or a conflict at the hub."),
    "413": _problem("The body is too large."),
    "502": _problem("The hub could not be reached; retry with the same key."),
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name, path, request, response, status, summary in m.OPERATIONS:
        paths[path] = {
            "post": {
                "operationId": name,
                "summary": summary,
                "description": (request.__doc__ or "").strip(),
                "parameters": [_IDEMPOTENCY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(request)}},
                },
                "responses": {
                    str(status): {
                        "description": "Accepted by the hub (its answer).",
                        "content": {"application/json": {"schema": _ref(response)}},
                    },
                    **_ERRORS,
                },
            }
        }
    paths["/local/v1/dead-letters"] = {
        "get": {
            "operationId": "listDeadLetters",
            "summary": "Inbox items the partner system did not take within the attempt limit",
            "responses": {
                "200": {
                    "description": "The dead letters (metadata only).",
                    "content": {"application/json": {"schema": _ref(m.DeadLetters)}},
                },
                "401": _ERRORS["401"],
            },
        }
    }
    paths["/local/v1/dead-letters/{message_id}/retry"] = {
        "post": {
            "operationId": "retryDeadLetter",
            "summary": "Deliver a dead letter again",
            "parameters": [
                {
                    "name": "message_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                },
            ],
            "responses": {
                "200": {
                    "description": "Queued again.",
                    "content": {"application/json": {"schema": _ref(m.Retried)}},
                },
                "401": _ERRORS["401"],
                "404": _ERRORS["404"],
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "zvh-gateway adapter: local API",
            "version": "1.0.0",
            "description": "Plain JSON in; the adapter seals, signs and sends it through the "
            "region's hub. See docs/adapter.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "webhooks": {
            "inboxItem": {
                "post": {
                    "summary": "An opened inbox item, POSTed to the partner system",
                    "description": "Headers: Idempotency-Key `inbox-<message_id>` (the same on "
                    "every attempt), X-ZVH-Kind, X-ZVH-Attempt. Any 2xx accepts the item; "
                    "for a dat- or wat-request the reply may carry the decision.",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(m.WebhookItem)}},
                    },
                    "responses": {
                        "200": {
                            "description": "Accepted; an optional answer.",
                            "content": {"application/json": {"schema": _ref(m.WebhookReply)}},
                        },
                        "204": {"description": "Accepted, nothing to answer now."},
                    },
                }
            }
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token in the adapter's token file (mode 0600).",
                }
            },
        },
    }
