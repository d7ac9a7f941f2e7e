"""The offline ledger verifier: recompute everything from leaf data, trust nothing.

Pure: it takes the rows and the stored checkpoints as iterables and the hub's
public key as an argument (never a key read from the same file), and returns a
report naming the first bad index. The CLI (`zvh-gateway ledger verify`) feeds it
from a database file.

What it checks, in one pass in index order:
- indexes are gap-free from 0 and each leaf data parses, names its own index and
  hashes to the stored leaf hash;
- a body and its salt are both present or both purged; when present, the
  commitment in the leaf data is SHA-256(salt || body), the body is canonical JSON
  and its type and time are the leaf's;
- every stored checkpoint is signed by the given key for this hub's origin and its
  root is the root of exactly the leaves before it (so all checkpoints are mutually
  consistent), and none claims more entries than there are;
- every purged body is named by a later `purge` entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.crypto.canonical import canonical_json
from gateway.ledger.checkpoint import verify_checkpoint
from gateway.ledger.leaf import commitment_of, leaf_hash, parse_leaf_data
from gateway.ledger.merkle import CompactTree


class Row(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def leaf_data(self) -> bytes: ...
    @property
    def leaf_hash(self) -> bytes: ...
    @property
    def body(self) -> bytes | None: ...
    @property
    def salt(self) -> bytes | None: ...


class StoredNote(Protocol):
    @property
    def size(self) -> int: ...
    @property
    def note(self) -> str: ...


@dataclass(slots=True)
class VerifyReport:
    ok: bool = True
    entries: int = 0
    checkpoints: int = 0
    bodies_checked: int = 0
    purged: int = 0
    uncovered: int = 0  # entries after the last checkpoint (appended in its last seconds)
    first_bad_index: int | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    def fail(self, index: int | None, problem: str) -> VerifyReport:
        self.ok = False
        self.first_bad_index = index
        self.problem = problem
        return self


def _check_body(row: Row, leaf_type: str, leaf_time: int, commitment: str) -> str | None:
    if row.body is None or row.salt is None:
        return (
            "body and salt must be purged together"
            if (row.body, row.salt) != (None, None)
            else None
        )
    if commitment_of(row.salt, row.body) != commitment:
        return "commitment does not match body and salt"
    try:
        body = json.loads(row.body)
    except (UnicodeDecodeError, ValueError):
        return "body is not JSON"
    if not isinstance(body, dict) or canonical_json(body) != row.body:
        return "body is not canonical JSON"
    if body.get("type") != leaf_type or body.get("time_ms") != leaf_time:
        return "body type or time differs from the leaf"
    return None


def verify_ledger(
    rows: Iterable[Row], checkpoints: Iterable[StoredNote], *, origin: str, public_key: bytes
) -> VerifyReport:
    report = VerifyReport()
    pending = sorted(checkpoints, key=lambda c: c.size)
    tree = CompactTree()
    purged: list[int] = []
    named: set[int] = set()
    covered = 0  # size of the last verified checkpoint
    next_cp = 0

    def check_checkpoints_at(size: int) -> bool:
        nonlocal next_cp, covered
        while next_cp < len(pending) and pending[next_cp].size == size:
            stored = pending[next_cp]
            try:
                cp = verify_checkpoint(stored.note, origin, public_key)
            except ValueError as exc:
                report.fail(max(size - 1, 0), f"checkpoint at size {size}: {exc}")
                return False
            if cp.size != size:
                report.fail(max(size - 1, 0), f"checkpoint note at size {size} says {cp.size}")
                return False
            if cp.root != tree.root():
                report.fail(
                    covered,
                    f"checkpoint at size {size} does not match the leaves "
                    f"(the first bad index is in [{covered}, {size}))",
                )
                return False
            covered = size
            report.checkpoints += 1
            next_cp += 1
        return True

    if not check_checkpoints_at(0):
        return report
    expected = 0
    for row in rows:
        if row.index != expected:
            return report.fail(expected, f"entry {expected} is missing (next is {row.index})")
        try:
            leaf = parse_leaf_data(row.leaf_data)
        except ValueError as exc:
            return report.fail(expected, f"leaf data does not parse: {exc}")
        if leaf.index != expected:
            return report.fail(expected, f"leaf data names index {leaf.index}")
        digest = leaf_hash(row.leaf_data)
        if digest != row.leaf_hash:
            return report.fail(expected, "stored leaf hash differs from the leaf data")
        problem = _check_body(row, leaf.type, leaf.time_ms, leaf.commitment)
        if problem is not None:
            return report.fail(expected, problem)
        if row.body is None:
            purged.append(expected)
        else:
            report.bodies_checked += 1
            if leaf.type == "purge":
                named.update(int(i) for i in json.loads(row.body).get("indexes", []))
        tree.append(digest)
        expected += 1
        if not check_checkpoints_at(expected):
            return report
    report.entries = expected
    if next_cp < len(pending):
        return report.fail(
            expected,
            f"a checkpoint claims {pending[next_cp].size} entries, the ledger has {expected}",
        )
    unnamed = [i for i in purged if i not in named]
    if unnamed:
        return report.fail(unnamed[0], "body purged without a purge entry naming it")
    report.purged = len(purged)
    report.uncovered = expected - covered
    return report
