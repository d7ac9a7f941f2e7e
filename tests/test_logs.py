"""The log handler's batching and the request ids (gateway/logs.py)."""

from __future__ import annotations

import io
import logging
import re
import time
from typing import Any

from gateway.logs import BufferedStreamHandler, JsonFormatter, new_request_id


def _buffered(
    name: str, *, json_lines: bool = True, **options: Any
) -> tuple[io.StringIO, BufferedStreamHandler, logging.Logger]:
    """A logger of its own that writes through a BufferedStreamHandler into a string."""
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, **options)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return stream, handler, logger


def test_info_lines_wait_for_the_flush_interval() -> None:
    stream, handler, log = _buffered("test.logs.interval", flush_s=0.05)
    try:
        log.info("first")
        assert stream.getvalue() == ""  # not one write per line
        deadline = time.monotonic() + 5
        while "first" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert '"msg": "first"' in stream.getvalue()
    finally:
        handler.close()


def test_a_warning_is_written_at_once_after_what_came_before() -> None:
    stream, handler, log = _buffered("test.logs.warning", flush_s=60)
    try:
        log.info("before")
        log.warning("now")
        lines = stream.getvalue().splitlines()
        assert [line.split('"msg": "')[1].split('"')[0] for line in lines] == ["before", "now"]
    finally:
        handler.close()


def test_a_full_buffer_and_close_write_everything() -> None:
    stream, handler, log = _buffered("test.logs.full", json_lines=False, flush_s=60, max_lines=3)
    log.info("a")
    log.info("b")
    assert stream.getvalue() == ""
    log.info("c")
    assert stream.getvalue().splitlines() == ["a", "b", "c"]
    log.info("d")
    handler.close()
    assert stream.getvalue().splitlines() == ["a", "b", "c", "d"]


def test_request_ids_are_128_bit_hex_and_unique() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # Consecutive ids share no visible structure (a bare counter would).
    assert ids[0][:16] != ids[1][:16]
