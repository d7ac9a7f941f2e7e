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
from gateway.crypto.keys import verify_record
from gateway.ledger.checkpoint import Checkpoint, chain_link, parse_checkpoint, verify_checkpoint
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
    @property
    def root(self) -> bytes: ...
    @property
    def time_ms(self) -> int: ...
    @property
    def tree(self) -> bytes: ...


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


def _stored_row_problem(stored: StoredNote, cp: Checkpoint) -> str | None:
    """The unsigned columns of a checkpoint row must agree with its signed note: the
    hub restarts from `tree`, so a forged one would otherwise be signed over."""
    if stored.root != cp.root or stored.time_ms != cp.time_ms:
        return "its root or time column differs from its signed note"
    try:
        tree = CompactTree.from_bytes(stored.tree)
    except ValueError:
        return "its stored tree state does not parse"
    if tree.size != cp.size or tree.root() != cp.root:
        return "its stored tree state differs from its signed note"
    return None


def find_origin(checkpoints: Iterable[StoredNote], public_key: bytes) -> str:
    """The origin under which the stored notes verify with the pinned key (any note
    will do: the key hash in the signature line binds the origin to the key)."""
    first = ""
    for stored in checkpoints:
        try:
            origin = parse_checkpoint(stored.note)[0].origin
        except ValueError:
            continue
        first = first or origin
        try:
            verify_checkpoint(stored.note, origin, public_key)
        except ValueError:
            continue
        return origin
    return first


class _Verifier:
    """One pass over the rows; stored checkpoints and anchors are checked as the
    recomputed tree reaches their sizes."""

    def __init__(
        self,
        checkpoints: Iterable[StoredNote],
        origin: str,
        public_key: bytes,
        trusted: dict[int, bytes],
    ) -> None:
        self.report = VerifyReport()
        self.pending = sorted(checkpoints, key=lambda c: c.size)
        self.origin = origin
        self.key = public_key
        self.trusted = trusted
        self.tree = CompactTree()
        self.purged: list[int] = []
        self.named: set[int] = set()
        self.covered = 0  # size of the last verified checkpoint
        self.next_cp = 0
        self.opaque = False
        self.last_stored: tuple[int, bytes] | None = None
        self.linked = False

    def _chain_problem(self, stored: StoredNote, cp: Checkpoint) -> tuple[str | None, int]:
        """Each stored checkpoint names the one stored before it, signed by the hub:
        a deleted row shows as a link to a checkpoint that is not there. Returns the
        problem and the size whose last entry to name (the missing checkpoint's)."""
        chain = getattr(stored, "chain", None)
        if chain is None:
            # Stored before links existed: only accepted before the first linked row.
            return (
                "its link to the previous checkpoint is missing" if self.linked else None,
                cp.size,
            )
        self.linked = True
        try:
            link = json.loads(chain)
        except ValueError:
            return "its link to the previous checkpoint does not parse", cp.size
        sig = getattr(stored, "chain_sig", None) or ""
        if not isinstance(link, dict) or not verify_record(self.key, link, sig):
            return "its link to the previous checkpoint is not signed by the given key", cp.size
        if link == chain_link(self.origin, self.last_stored, cp):
            return None, cp.size
        named = link.get("prev_size")
        if isinstance(named, int) and named != (
            None if self.last_stored is None else self.last_stored[0]
        ):
            return f"the checkpoint stored before it (size {named}) is missing", named
        return "its link does not match the previous checkpoint", cp.size

    def at_size(self, size: int) -> bool:
        """Check every stored checkpoint and anchor of this size against the tree."""
        report, tree = self.report, self.tree
        while self.next_cp < len(self.pending) and self.pending[self.next_cp].size == size:
            stored = self.pending[self.next_cp]
            try:
                cp = verify_checkpoint(stored.note, self.origin, self.key)
            except ValueError as exc:
                report.fail(max(size - 1, 0), f"checkpoint at size {size}: {exc}")
                return False
            if cp.size != size:
                report.fail(max(size - 1, 0), f"checkpoint note at size {size} says {cp.size}")
                return False
            if cp.root != tree.root():
                report.fail(
                    self.covered,
                    f"checkpoint at size {size} does not match the "
                    f"leaves (the first bad index is in [{self.covered}, {size}))",
                )
                return False
            problem = _stored_row_problem(stored, cp)
            if problem is not None:
                report.fail(max(size - 1, 0), f"checkpoint at size {size}: {problem}")
                return False
            problem, where = self._chain_problem(stored, cp)
            if problem is not None:
                report.fail(max(where - 1, 0), f"checkpoint at size {size}: {problem}")
                return False
            self.covered = size
            self.last_stored = (size, cp.root)
            report.checkpoints += 1
            self.next_cp += 1
        root = self.trusted.pop(size, None)
        if root is not None and root != tree.root():
            report.fail(
                self.covered,
                f"the ledger does not extend the anchor checkpoint of "
                f"size {size} (the first bad index is in [{self.covered}, {size}))",
            )
            return False
        return True

    def row(self, expected: int, row: Row) -> bool:
        report = self.report
        # A missing, moved or unreadable entry may be the purge entry that justified
        # earlier purges: then no earlier index can be blamed (`opaque`).
        stored_wrong = getattr(row, "storage_problem", None)
        if stored_wrong:
            report.fail(expected, str(stored_wrong))
            return False
        if row.index != expected:
            self.opaque = True
            report.fail(expected, f"entry {expected} is missing (next is {row.index})")
            return False
        try:
            leaf = parse_leaf_data(row.leaf_data)
        except (ValueError, TypeError) as exc:
            self.opaque = True
            report.fail(expected, f"leaf data does not parse: {exc}")
            return False
        if leaf.index != expected:
            self.opaque = True
            report.fail(expected, f"leaf data names index {leaf.index}")
            return False
        digest = leaf_hash(row.leaf_data)
        if digest != row.leaf_hash:
            report.fail(expected, "stored leaf hash differs from the leaf data")
            return False
        problem = _check_body(row, leaf.type, leaf.time_ms, leaf.commitment)
        if problem is not None:
            report.fail(expected, problem)
            return False
        if row.body is None:
            self.purged.append(expected)
        else:
            report.bodies_checked += 1
            if leaf.type == "purge":
                self.named.update(_purge_names(row.body))
        self.tree.append(digest)
        return self.at_size(expected + 1)

    def finish(self, entries: int) -> VerifyReport:
        report = self.report
        report.entries = entries
        if self.trusted:
            return report.fail(
                entries,
                f"the ledger has {entries} entries, fewer than an "
                f"anchor checkpoint of size {max(self.trusted)}",
            )
        if entries > 0 and report.checkpoints == 0:
            return report.fail(0, "no checkpoint signed by the given key covers the ledger")
        if self.next_cp < len(self.pending):
            return report.fail(
                entries,
                f"a checkpoint claims {self.pending[self.next_cp].size}"
                f" entries, the ledger has {entries}",
            )
        unnamed = [i for i in self.purged if i not in self.named]
        if unnamed:
            return report.fail(unnamed[0], "body purged without a purge entry naming it")
        report.purged = len(self.purged)
        report.uncovered = entries - self.covered
        return report


def verify_ledger(
    rows: Iterable[Row],
    checkpoints: Iterable[StoredNote],
    *,
    origin: str,
    public_key: bytes,
    anchors: Iterable[str] = (),
) -> VerifyReport:
    """Verify everything; `anchors` are signed notes kept elsewhere (a witness, an
    auditor's earlier copy): the ledger must extend each of them. Deleting stored
    checkpoint rows is only visible against such anchors (the C2SP witness model)."""
    trusted: dict[int, bytes] = {}
    for note in anchors:
        try:
            anchor = verify_checkpoint(note, origin, public_key)
        except ValueError as exc:
            return VerifyReport().fail(None, f"anchor checkpoint: {exc}")
        trusted[anchor.size] = anchor.root
    verifier = _Verifier(checkpoints, origin, public_key, trusted)
    if not verifier.at_size(0):
        return verifier.report
    expected = 0
    remaining = iter(rows)
    for row in remaining:
        if not verifier.row(expected, row):
            if verifier.opaque:
                return verifier.report
            return _first(verifier.report, row, remaining, verifier.purged, verifier.named)
        expected += 1
    return verifier.finish(expected)


def _purge_names(body: bytes) -> set[int]:
    try:
        indexes = json.loads(body).get("indexes", [])
        return {int(i) for i in indexes}
    except (ValueError, TypeError, AttributeError):
        return set()


def _first(
    report: VerifyReport, failing: Row, rest: Iterable[Row], purged: list[int], named: set[int]
) -> VerifyReport:
    """Make `first_bad_index` the first: a purge that no purge entry justifies, before
    the failing row, is earlier. Purge entries come after what they purge, so read the
    rest of the ledger for their names (nothing else of it is trusted). When the
    failing row might itself be the purge entry that names them, nobody can tell:
    the failing row stays the answer."""
    try:
        failing_type = parse_leaf_data(failing.leaf_data).type
    except (ValueError, TypeError):
        return report
    if failing_type == "purge":
        if failing.body is None:
            return report
        names = _purge_names(failing.body)
        if not names:
            return report
        named.update(names)
    for row in rest:
        try:
            entry_type = parse_leaf_data(row.leaf_data).type
        except (ValueError, TypeError):
            return report  # an unreadable entry might have named them
        if entry_type != "purge":
            continue
        names = _purge_names(row.body) if row.body is not None else set()
        if not names:
            return report  # purge entries are never purged: this one was damaged
        named.update(names)
    bad = report.first_bad_index
    unnamed = [i for i in purged if i not in named and (bad is None or i < bad)]
    if unnamed:
        report.first_bad_index = unnamed[0]
        report.problem = "body purged without a purge entry naming it"
    return report
