"""Structured logging: one JSON object a line, on stderr.

Log records carry only metadata (route template, organisation id, counts, error
class, the hub's own request id): never payloads, paths with ids, query strings,
identifiers of persons, keys or tokens. Extra fields passed with `extra={...}` are
emitted as members of the JSON object.

While a request is handled, `request_context` holds its request id (random, made by
the hub, also sent back as `X-Request-Id`), and every line logged meanwhile carries
it, so one request's lines can be found together.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import secrets
import sys
import time
from collections.abc import Iterator

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "zvh_request_id", default=None
)
ACCESS_LOGGER = "gateway.access"


def new_request_id() -> str:
    """128 random bits, hex: says nothing about the request or the caller."""
    return secrets.token_hex(16)


@contextlib.contextmanager
def request_context(request_id: str) -> Iterator[None]:
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = _REQUEST_ID.get()
        if request_id is not None:
            out["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = (
                    value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
                )
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
            out["trace"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
