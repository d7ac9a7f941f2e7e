"""Multi-row INSERT: the writer's way to keep the number of SQLite steps down."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

_ROWS_PER_STATEMENT = 64


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`head VALUES (...), (...), ...`: one statement (one step) per 64 rows instead of
    one per row as with executemany. Each step hands the GIL back and forth between the
    database thread and the event loop, so under load the step count, not SQLite,
    bounds a group commit."""
    if not rows:
        return
    width = len(rows[0])
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        conn.execute(
            f"{head} VALUES {', '.join([one] * len(chunk))}",
            [value for row in chunk for value in row],
        )
