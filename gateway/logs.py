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
import hashlib
import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "zvh_request_id", default=None
)
ACCESS_LOGGER = "gateway.access"


# Request ids: a keyed BLAKE2b of a counter, the key drawn once per process.
_ID_KEY = os.urandom(32)
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    """128 bits, hex, that say nothing about the request or the caller (not even how
    many came before: the counter is hidden under a per-process random key).

    Not os.urandom per request: getrandom(2) releases the GIL, and on a busy hub the
    database thread then takes it and the event loop waits to get it back."""
    counter = next(_ID_COUNTER).to_bytes(8, "big")
    return hashlib.blake2b(counter, key=_ID_KEY, digest_size=16).hexdigest()


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


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes lines below WARNING in batches: at most `flush_s` after they were logged,
    or once `max_lines` are waiting; a WARNING or worse is written at once, after
    everything logged before it, and so is everything at exit (logging.shutdown).

    One write(2) per request (the access log) cost a busy hub more than the line
    itself: every system call releases the GIL, and the database thread then holds up
    the event loop. A kill -9 can lose the last `flush_s` of INFO lines; nothing the
    ledger must keep is ever only in a log.
    """

    def __init__(self, stream: TextIO, *, flush_s: float = 0.2, max_lines: int = 512) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._max_lines = max_lines
        self._flush_s = flush_s
        self._stopped = threading.Event()
        self._flusher = threading.Thread(target=self._run, name="log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
            if record.levelno >= logging.WARNING or len(self._lines) >= self._max_lines:
                self._write()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()

    def _write(self) -> None:
        if self._lines:
            text, self._lines = "".join(self._lines), []
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed: nowhere left to log
                pass

    def _run(self) -> None:
        while not self._stopped.wait(self._flush_s):
            self.flush()


def configure(level: str = "info") -> None:
    handler = BufferedStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BufferedStreamHandler):
            old.close()  # its lines out, its flusher stopped
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The lines carry none of these: skip the getpid() system call and the thread and
    # process lookups that every record (one per request) would otherwise make.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
