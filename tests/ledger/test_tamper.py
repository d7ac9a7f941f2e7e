"""Tamper evidence: the offline verifier against an attacker with write access to the file.

One real ledger is built per module through the hub's own code (`Database` group
commits, `LedgerService` checkpoints, a purge with its `purge` entries). Every
example then edits a COPY of that SQLite file with plain `sqlite3`, after dropping
the schema's triggers (which only stop honest code), and runs the verifier with the
hub key pinned from outside the file. Each edit must make it fail and name the
first bad index: exactly where the file shows it, or, where the entry's body is gone
or the forgery is self-consistent, a range that contains it (a signed checkpoint
covers the edit, but cannot say which leaf under it changed).

Things the file alone cannot show (a checkpoint row deleted, an entry appended after
the last checkpoint) and the verifier's remaining gaps are tested at the end, the
gaps as strict xfails naming the bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.cli import main
from gateway.clock import FrozenClock
from gateway.crypto.canonical import canonical_json
from gateway.crypto.encoding import b64u_encode
from gateway.crypto.keys import OrgKeys
from gateway.ledger.checkpoint import Checkpoint, origin_for, sign_checkpoint
from gateway.ledger.leaf import commitment_of, leaf_data, leaf_hash
from gateway.ledger.merkle import root_of
from gateway.ledger.verify import VerifyReport
from gateway.services.admin import verify_file
from gateway.services.ledger import LedgerService
from gateway.storage import ledger_store
from gateway.storage.database import Database, Tx
from gateway.storage.ledger_store import LedgerRef
from tests.ledger.support import settle_warmup

HUB = "hub-test"
ORIGIN = origin_for(HUB)
ROOT_DIR = Path(__file__).resolve().parents[2]
EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FEWER = settings(EXAMPLES, max_examples=30)

# What the module ledger is built from: appends (ints), signed checkpoints, and purges
# of the named cases' entries (each with its `purge` entry, as retention does it).
SIGN = "sign"
PLAN: tuple[int | str | tuple[str, ...], ...] = (
    SIGN,  # the size-0 checkpoint of an empty log
    3,
    SIGN,
    1,
    SIGN,
    1,
    SIGN,
    7,
    SIGN,
    8,
    SIGN,
    ("C-1", "C-2"),
    6,
    SIGN,
    ("C-5",),
    5,
    SIGN,
)
ACTORS = ("zvh-test", "politie-test", "vt-test", "ggz-test")
TYPES = ("case-registered", "dat-request", "dat-answer", "dat-answer", "case-closed")


@dataclass(frozen=True, slots=True)
class Row:
    index: int
    entry_type: str
    time_ms: int
    leaf_data: bytes
    leaf_hash: bytes
    body: bytes | None
    salt: bytes | None


@dataclass(frozen=True, slots=True)
class Stored:
    size: int
    time_ms: int
    note: str


@dataclass(frozen=True, slots=True)
class BaseLedger:
    """The module's clean ledger: its file's bytes and what the tests need to know of it."""

    image: bytes
    keys: OrgKeys
    rows: tuple[Row, ...]
    checkpoints: tuple[Stored, ...]
    named: dict[int, frozenset[int]]  # purge entry index -> the indexes it names
    workdir: Path

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def sizes(self) -> list[int]:
        return sorted({c.size for c in self.checkpoints})

    @property
    def with_body(self) -> list[int]:
        return [r.index for r in self.rows if r.body is not None]

    @property
    def purged(self) -> list[int]:
        return [r.index for r in self.rows if r.body is None]

    def __repr__(self) -> str:  # hypothesis prints the fixture with a failing example
        return f"BaseLedger(size={self.size}, sizes={self.sizes}, purged={self.purged})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # not hypothesis's field-by-field dump of the file image

    def range_of(self, index: int) -> tuple[int, int]:
        """The checkpoint range [a, b) that covers `index` (a: last size <= index)."""
        a = max(s for s in self.sizes if s <= index)
        b = min(s for s in self.sizes if s > index)
        return a, b


def _body(n: int) -> tuple[str, dict[str, Any], tuple[str, ...]]:
    case = f"C-{n // 5 + 1}"
    return (
        TYPES[n % len(TYPES)],
        {"case_ref": case, "step": n, "note": "é" * (n % 3), "payload_sha256": f"{n:064x}"},
        (ACTORS[n % 4], ACTORS[(n + 1) % 4]),
    )


def _append(tx: Tx, entry: tuple[str, int, dict[str, Any], tuple[str, ...]]) -> LedgerRef:
    return tx.append_ledger(*entry)


async def _build(path: Path, keys: OrgKeys) -> None:
    clock = FrozenClock()
    db = Database(path)
    await db.open()
    ledger = LedgerService(db, keys, clock, interval_s=0.01)
    cases: dict[str, list[int]] = {}
    n = 0
    try:
        await ledger.start()  # signs (and stores) the size-0 checkpoint
        await settle_warmup()
        for step in PLAN:
            clock.advance(0.5)
            if step == SIGN:
                head = await ledger.sign()
                assert head is not None
                assert head.size == db.ledger.size
            elif isinstance(step, int):
                for _ in range(step):
                    entry_type, body, actors = _body(n)
                    clock.advance(0.01)
                    now = clock.now_ms()
                    ref = await db.write(
                        "append", functools.partial(_append, entry=(entry_type, now, body, actors))
                    )
                    cases.setdefault(body["case_ref"], []).append(ref.index)
                    n += 1
            else:
                targets = sorted(i for case in step for i in cases[case])
                now = clock.now_ms()

                def purge(tx: Tx, targets: list[int] = targets, now: int = now) -> None:
                    ledger_store.purge_entries(tx.conn, targets)
                    body = {"indexes": targets, "cases_purged": 0, "reason": "retention", "by": HUB}
                    tx.append_ledger("purge", now, body, (HUB,))

                await db.write("purge", purge)
    finally:
        await db.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseLedger:
    workdir = tmp_path_factory.mktemp("tamper")
    path = workdir / "base.sqlite3"
    keys = OrgKeys.generate(HUB)
    asyncio.run(_build(path, keys))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = conn.execute(
            "SELECT idx, type, time_ms, leaf_data, leaf_hash, body, salt FROM ledger ORDER BY idx"
        ).fetchall()
        cps = conn.execute("SELECT size, time_ms, note FROM checkpoints ORDER BY size").fetchall()
    finally:
        conn.close()
    rows = tuple(
        Row(
            int(r[0]),
            str(r[1]),
            int(r[2]),
            bytes(r[3]),
            bytes(r[4]),
            None if r[5] is None else bytes(r[5]),
            None if r[6] is None else bytes(r[6]),
        )
        for r in raw
    )
    named = {
        r.index: frozenset(json.loads(r.body)["indexes"])
        for r in rows
        if r.entry_type == "purge" and r.body is not None
    }
    ledger = BaseLedger(
        image=path.read_bytes(),
        keys=keys,
        rows=rows,
        checkpoints=tuple(Stored(int(c[0]), int(c[1]), str(c[2])) for c in cps),
        named=named,
        workdir=workdir,
    )
    # The plan's shape, which the expectations below rely on.
    assert ledger.size == 33
    assert ledger.sizes == [0, 3, 4, 5, 12, 20, 27, 33]
    assert ledger.purged == [*range(10), *range(21, 26)]
    assert sorted(named) == [20, 27]
    return ledger


# -- running the verifier on an edited copy -----------------------------------------------


def _drop_triggers(conn: sqlite3.Connection) -> None:
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            " AND tbl_name IN ('ledger', 'checkpoints', 'ledger_actors', 'ledger_cases')"
        )
    ]
    assert names, "the schema's triggers were expected"
    for name in names:
        conn.execute(f'DROP TRIGGER "{name}"')


Edit = Callable[[sqlite3.Connection], None]


@contextlib.contextmanager
def edited_copy(base: BaseLedger, edit: Edit) -> Iterator[Path]:
    """A fresh copy of the clean file, edited by `edit` on a trigger-less connection."""
    with tempfile.TemporaryDirectory(dir=base.workdir) as folder:
        path = Path(folder) / "hub.sqlite3"
        path.write_bytes(base.image)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            _drop_triggers(conn)
            before = conn.total_changes
            edit(conn)
            changed = conn.total_changes - before
        finally:
            conn.close()
        assert changed > 0, "the edit changed nothing"
        yield path


def verify_edited(
    base: BaseLedger, edit: Edit, *, hub_org: str | None = None, anchors: tuple[str, ...] = ()
) -> VerifyReport:
    with edited_copy(base, edit) as path:
        return verify_file(path, base.keys.signing_key, hub_org, anchors)


RANGE = re.compile(r"first bad index is in \[(\d+), (\d+)\)")


def assert_exact(report: VerifyReport, index: int) -> None:
    assert not report.ok, report
    assert report.first_bad_index == index, report
    assert RANGE.search(report.problem or "") is None, report


def assert_within(report: VerifyReport, index: int) -> tuple[int, int]:
    """The verifier could only narrow it down to a checkpoint range, which holds `index`."""
    assert not report.ok, report
    match = RANGE.search(report.problem or "")
    assert match is not None, report
    low, high = int(match[1]), int(match[2])
    assert low <= index < high, report
    assert report.first_bad_index == low, report
    return low, high


def _flip(value: bytes, position: int, mask: int) -> bytes:
    data = bytearray(value)
    data[position % len(data)] ^= mask
    return bytes(data)


def _shift(conn: sqlite3.Connection, start: int, delta: int) -> None:
    """Renumber entries >= start by `delta` (through negatives: idx is a primary key)."""
    conn.execute("UPDATE ledger SET idx = -idx - 1000000 WHERE idx >= ?", (start,))
    conn.execute("UPDATE ledger SET idx = -idx - 1000000 + ? WHERE idx < 0", (delta,))


def _forge(index: int, like: Row) -> tuple[Any, ...]:
    """A self-consistent row for `index`: what an attacker who knows the format writes."""
    salt = hashlib.sha256(b"forged salt %d" % index).digest()
    if like.body is None:
        commitment = hashlib.sha256(b"forged commitment %d" % index).hexdigest()
        data = leaf_data(index, like.entry_type, like.time_ms, commitment)
        return (index, like.entry_type, like.time_ms, data, leaf_hash(data), None, None)
    body = canonical_json({**json.loads(like.body), "forged": True})
    data = leaf_data(index, like.entry_type, like.time_ms, commitment_of(salt, body))
    return (index, like.entry_type, like.time_ms, data, leaf_hash(data), body, salt)


def _insert(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    conn.execute(
        "INSERT INTO ledger (idx, type, time_ms, leaf_data, leaf_hash, body, salt)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        row,
    )


def _set_row(conn: sqlite3.Connection, index: int, row: Row | tuple[Any, ...]) -> None:
    values = (
        (row.entry_type, row.time_ms, row.leaf_data, row.leaf_hash, row.body, row.salt)
        if isinstance(row, Row)
        else row[1:]
    )
    conn.execute(
        "UPDATE ledger SET type = ?, time_ms = ?, leaf_data = ?, leaf_hash = ?, body = ?,"
        " salt = ? WHERE idx = ?",
        (*values, index),
    )


# -- the clean ledger, and the key ----------------------------------------------------------


def test_clean_ledger_verifies(base: BaseLedger, tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    path.write_bytes(base.image)
    report = verify_file(path, base.keys.signing_key)
    assert report.ok, report
    assert (report.entries, report.checkpoints) == (33, len(base.checkpoints))
    assert (report.bodies_checked, report.purged, report.uncovered) == (18, 15, 0)
    # The pure core agrees with an independent recomputation of every checkpoint root.
    for cp in base.checkpoints:
        assert f"\n{cp.size}\n" in cp.note
        root = root_of([r.leaf_hash for r in base.rows[: cp.size]])
        assert Checkpoint(ORIGIN, cp.size, root, cp.time_ms).note_text().decode() in cp.note


def test_cli_verify_exit_codes(
    base: BaseLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hub.sqlite3"
    path.write_bytes(base.image)
    key = b64u_encode(base.keys.signing_key)
    # `--hub-key=KEY`: a b64u key may start with "-", which argparse takes for an option.
    assert main(["ledger", "verify", "--db", str(path), f"--hub-key={key}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ledger OK: 33 entries, 8 checkpoints, 18 bodies checked, 15 purged")
    assert main(["ledger", "verify", "--db", str(path), f"--hub-key={key}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    # Another hub's key: the very first checkpoint is not signed by it.
    other = b64u_encode(OrgKeys.generate(HUB).signing_key)
    assert main(["ledger", "verify", "--db", str(path), f"--hub-key={other}"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("ledger BAD at index 0: checkpoint at size 0"), out
    # The right key, but pinned to another hub's origin.
    args = ["ledger", "verify", "--db", str(path), f"--hub-key={key}", "--hub-org", "hub-other"]
    assert main(args) == 1
    assert "BAD at index 0" in capsys.readouterr().out
    # An edited body: exit 1 and the index.
    conn = sqlite3.connect(path, isolation_level=None)
    _drop_triggers(conn)
    conn.execute("UPDATE ledger SET body = CAST(? AS BLOB) WHERE idx = 17", (b'{"x":1}',))
    conn.close()
    assert main(["ledger", "verify", "--db", str(path), f"--hub-key={key}"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("ledger BAD at index 17: commitment does not match"), out


def test_verify_as_a_process(base: BaseLedger, tmp_path: Path) -> None:
    """`python -m gateway ledger verify` as an auditor runs it: exit 0, then 1 and the index."""
    path = tmp_path / "hub.sqlite3"
    path.write_bytes(base.image)
    cmd = [
        sys.executable,
        "-m",
        "gateway",
        "ledger",
        "verify",
        "--db",
        str(path),
        f"--hub-key={b64u_encode(base.keys.signing_key)}",
    ]
    ok = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT_DIR, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ledger OK: 33 entries")
    conn = sqlite3.connect(path, isolation_level=None)
    _drop_triggers(conn)
    conn.execute("DELETE FROM ledger WHERE idx = 25")
    conn.close()
    bad = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT_DIR, timeout=60)
    assert bad.returncode == 1, bad.stderr
    assert bad.stdout.startswith("ledger BAD at index 25: entry 25 is missing"), bad.stdout


def test_another_hub_key_fails(base: BaseLedger) -> None:
    other = OrgKeys.generate(HUB)
    with tempfile.TemporaryDirectory(dir=base.workdir) as folder:
        path = Path(folder) / "hub.sqlite3"
        path.write_bytes(base.image)
        report = verify_file(path, other.signing_key)
    assert not report.ok
    assert report.first_bad_index == 0
    assert "no signature by the expected key" in (report.problem or "")


# -- leaves, bodies and salts -----------------------------------------------------------------


@EXAMPLES
@given(data=st.data())
def test_a_flipped_byte_is_named_exactly(base: BaseLedger, data: st.DataObject) -> None:
    column = data.draw(st.sampled_from(["leaf_data", "leaf_hash", "body", "salt"]))
    candidates = base.with_body if column in ("body", "salt") else list(range(base.size))
    index = data.draw(st.sampled_from(candidates))
    row = base.rows[index]
    value = getattr(row, column)
    assert isinstance(value, bytes)
    position = data.draw(st.integers(0, len(value) - 1))
    mask = data.draw(st.integers(1, 255))

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute(
            f"UPDATE ledger SET {column} = ? WHERE idx = ?", (_flip(value, position, mask), index)
        )

    assert_exact(verify_edited(base, edit), index)


@EXAMPLES
@given(data=st.data())
def test_a_deleted_entry_is_named_exactly(base: BaseLedger, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, base.size - 1))
    renumber = data.draw(st.booleans())  # close the gap, as a careful attacker would

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM ledger WHERE idx = ?", (index,))
        if renumber:
            _shift(conn, index + 1, -1)

    assert_exact(verify_edited(base, edit), index)


@EXAMPLES
@given(data=st.data())
def test_an_inserted_entry_is_named(base: BaseLedger, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, base.size - 1))
    like = base.rows[data.draw(st.integers(0, base.size - 1))]
    consistent = data.draw(st.booleans())
    if consistent:
        row = _forge(index, like)
    else:
        junk = data.draw(st.binary(min_size=1, max_size=80))
        row = (index, like.entry_type, like.time_ms, junk, leaf_hash(junk), like.body, like.salt)

    def edit(conn: sqlite3.Connection) -> None:
        _shift(conn, index, +1)
        _insert(conn, row)

    report = verify_edited(base, edit)
    if not consistent:
        assert_exact(report, index)
    elif index + 1 in base.sizes:
        # A well-formed forgery at `index` is caught by the checkpoint right after it.
        assert_within(report, index)
    else:
        # Otherwise by the genuine entry it pushed to index + 1, which still names
        # `index`. Two well-formed entries now claim `index` and only a checkpoint could
        # say which is the intruder, so index + 1 is as precise as the file allows.
        assert_exact(report, index + 1)


@EXAMPLES
@given(data=st.data())
def test_reordered_entries_are_named_exactly(base: BaseLedger, data: st.DataObject) -> None:
    first = data.draw(st.integers(0, base.size - 2))
    last = data.draw(st.integers(first + 1, base.size - 1))
    how = data.draw(st.sampled_from(["swap", "rotate", "swap-bodies"]))
    if how == "swap-bodies":
        # Both bodies and salts change places; at least one of the two must have one,
        # and a body moving down into a purged entry's place is the xfail case below.
        assume(base.rows[first].body is not None or base.rows[last].body is not None)
        assume(not (base.rows[first].body is not None and base.rows[last].body is None))

    def edit(conn: sqlite3.Connection) -> None:
        rows = base.rows
        if how == "swap":
            _set_row(conn, first, rows[last])
            _set_row(conn, last, rows[first])
        elif how == "rotate":  # the last entry moves to `first`, the others one up
            order = [rows[last], *rows[first:last]]
            for offset, row in enumerate(order):
                _set_row(conn, first + offset, row)
        else:
            for here, there in ((first, rows[last]), (last, rows[first])):
                conn.execute(
                    "UPDATE ledger SET body = ?, salt = ? WHERE idx = ?",
                    (there.body, there.salt, here),
                )

    assert_exact(verify_edited(base, edit), first)


@EXAMPLES
@given(data=st.data())
def test_a_self_consistent_forgery_is_caught_by_its_checkpoint(
    base: BaseLedger, data: st.DataObject
) -> None:
    """Leaf data, leaf hash, body and salt all rewritten to agree (or, for a purged entry,
    leaf data and hash): only the signed root can show it, and only up to its range."""
    index = data.draw(st.integers(0, base.size - 1))
    row = _forge(index, base.rows[index])
    assert row[3] != base.rows[index].leaf_data

    def edit(conn: sqlite3.Connection) -> None:
        _set_row(conn, index, row)

    # The range is exactly the one between the checkpoints around the forged entry.
    assert assert_within(verify_edited(base, edit), index) == base.range_of(index)


@EXAMPLES
@given(data=st.data())
def test_a_purge_without_a_purge_entry_is_named(base: BaseLedger, data: st.DataObject) -> None:
    index = data.draw(st.sampled_from(base.with_body))
    what = data.draw(st.sampled_from(["body, salt", "body", "salt"]))

    def edit(conn: sqlite3.Connection) -> None:
        sets = ", ".join(f"{c} = NULL" for c in what.split(", "))
        conn.execute(f"UPDATE ledger SET {sets} WHERE idx = ?", (index,))

    report = verify_edited(base, edit)
    if what != "body, salt":
        assert_exact(report, index)
        assert report.problem == "body and salt must be purged together"
        return
    # Purging a `purge` entry's own body also un-names everything it had named; the
    # verifier names the first purged entry that no surviving purge entry accounts for.
    unnamed = set(base.purged) | {index}
    for purge_index, named in base.named.items():
        if purge_index != index:
            unnamed -= named
    assert index in unnamed
    assert_exact(report, min(unnamed))
    assert report.problem == "body purged without a purge entry naming it"


@FEWER
@given(data=st.data())
def test_a_restored_or_replaced_body_is_named_exactly(
    base: BaseLedger, data: st.DataObject
) -> None:
    """Putting a body back where one was purged (or replacing one): the commitment shows it."""
    index = data.draw(st.integers(0, base.size - 1))
    values = st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=5)
    body = canonical_json(data.draw(st.dictionaries(st.text(max_size=5), values)))
    salt = data.draw(st.binary(min_size=32, max_size=32))

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE ledger SET body = ?, salt = ? WHERE idx = ?", (body, salt, index))

    assert_exact(verify_edited(base, edit), index)


# -- checkpoints ------------------------------------------------------------------------------


def _checkpoint_index(size: int, entries: int) -> int:
    """Where the verifier reports a bad checkpoint: its last entry, or past the end."""
    return max(size - 1, 0) if size <= entries else entries


@EXAMPLES
@given(data=st.data())
def test_an_edited_checkpoint_note_is_named(base: BaseLedger, data: st.DataObject) -> None:
    cp = data.draw(st.sampled_from(base.checkpoints))
    position = data.draw(st.integers(0, len(cp.note) - 1))
    char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != cp.note[position]))
    note = cp.note[:position] + char + cp.note[position + 1 :]

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE checkpoints SET note = ? WHERE size = ? AND time_ms = ?",
            (note, cp.size, cp.time_ms),
        )

    # The origin pinned: see the xfail test for what an unpinned origin does.
    report = verify_edited(base, edit, hub_org=HUB)
    assert_exact(report, _checkpoint_index(cp.size, base.size))
    assert f"checkpoint at size {cp.size}" in (report.problem or ""), report


@EXAMPLES
@given(data=st.data())
def test_an_inserted_checkpoint_is_named(base: BaseLedger, data: st.DataObject) -> None:
    """A note the attacker signed (with a key of their own) for any size, any root."""
    size = data.draw(st.integers(0, base.size + 3))
    root = data.draw(st.binary(min_size=32, max_size=32))
    forger = OrgKeys.generate(HUB)
    when = 1_900_000_000_000 + data.draw(st.integers(0, 1000))
    note = sign_checkpoint(forger, Checkpoint(ORIGIN, size, root, when))

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO checkpoints (size, time_ms, root, note, tree) VALUES (?, ?, ?, ?, ?)",
            (size, when, root, note, b""),
        )

    report = verify_edited(base, edit)
    assert_exact(report, _checkpoint_index(size, base.size))
    if size <= base.size:
        assert f"checkpoint at size {size}" in (report.problem or ""), report
    else:
        assert f"a checkpoint claims {size} entries" in (report.problem or ""), report


@FEWER
@given(data=st.data())
def test_a_checkpoint_moved_to_another_size_is_named(base: BaseLedger, data: st.DataObject) -> None:
    cp = data.draw(st.sampled_from(base.checkpoints))
    size = data.draw(st.integers(0, base.size + 3).filter(lambda s: s != cp.size))

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE checkpoints SET size = ? WHERE size = ? AND time_ms = ?",
            (size, cp.size, cp.time_ms),
        )

    report = verify_edited(base, edit)
    # Named at its new place, or (the stored links) where it is missing from.
    assert not report.ok, report
    assert report.first_bad_index in {
        _checkpoint_index(size, base.size),
        _checkpoint_index(cp.size, base.size),
    }, report


@FEWER
@given(data=st.data())
def test_edits_under_a_deleted_checkpoint_are_still_caught(
    base: BaseLedger, data: st.DataObject
) -> None:
    """Deleting a checkpoint hides nothing: the edit, or the missing link, is named no
    later than the edit or the deleted checkpoint's last entry."""
    cp = data.draw(st.sampled_from([c for c in base.checkpoints if c.size < base.size]))
    index = data.draw(st.integers(0, base.size - 1))
    row = _forge(index, base.rows[index])

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM checkpoints WHERE size = ?", (cp.size,))
        _set_row(conn, index, row)

    report = verify_edited(base, edit)
    assert not report.ok, report
    assert report.first_bad_index is not None
    assert report.first_bad_index <= max(index, cp.size - 1), report


# -- limits of a file on its own --------------------------------------------------------------


def test_an_entry_appended_after_the_last_checkpoint_is_counted_as_uncovered(
    base: BaseLedger,
) -> None:
    """No checkpoint covers it yet, so it cannot be told from a genuine append (a hub
    killed before its next checkpoint leaves the same file); the verifier says so."""
    row = _forge(base.size, base.rows[-1])
    report = verify_edited(base, lambda conn: _insert(conn, row))
    assert report.ok
    assert (report.entries, report.uncovered) == (base.size + 1, 1)
    # The same entry made up badly is named.
    junk = (base.size, "x", 1, b"{}", leaf_hash(b"{}"), None, None)
    assert_exact(verify_edited(base, lambda conn: _insert(conn, junk)), base.size)


# -- found by these tests, and fixed -------------------------------------------------


@pytest.mark.parametrize("which", ["latest", "middle", "all"])
def test_a_deleted_checkpoint_is_noticed(base: BaseLedger, which: str) -> None:
    """Each stored checkpoint names the one stored before it (signed), so deleting one
    in the middle is named. Deleting all leaves nothing signed: BAD. The newest has no
    successor to name it: its entries show as not covered (only an anchor kept
    elsewhere, e.g. by a witness, can prove it existed)."""
    sizes = {"latest": [base.size], "middle": [12], "all": base.sizes}[which]

    def edit(conn: sqlite3.Connection) -> None:
        for size in sizes:
            conn.execute("DELETE FROM checkpoints WHERE size = ?", (size,))

    report = verify_edited(base, edit)
    if which == "latest":
        assert report.ok, report
        assert report.uncovered == base.size - base.sizes[-2]
        anchored = verify_edited(base, edit, anchors=(base.checkpoints[-1].note,))
        assert anchored.ok  # the anchor still verifies: the leaves are intact
        return
    assert not report.ok, report
    if which == "middle":
        assert report.first_bad_index == 11, report  # the deleted one covered up to 11


@pytest.mark.parametrize("column", ["root", "tree", "time_ms"])
def test_a_checkpoint_row_that_disagrees_with_its_note_is_named(
    base: BaseLedger, column: str
) -> None:
    cp = base.checkpoints[-1]
    value: object = {
        "root": bytes(32),
        "tree": cp.size.to_bytes(8, "big") + bytes(32 * cp.size.bit_count()),
        "time_ms": cp.time_ms + 1,
    }[column]

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute(f"UPDATE checkpoints SET {column} = ? WHERE size = ?", (value, cp.size))

    assert_exact(verify_edited(base, edit), cp.size - 1)


def test_an_entry_with_a_negative_index_is_named(base: BaseLedger) -> None:
    row = _forge(0, base.rows[0])
    report = verify_edited(base, lambda conn: _insert(conn, (-1, *row[1:])))
    assert not report.ok


@pytest.mark.parametrize("column", ["leaf_data", "body"])
def test_a_column_stored_as_text_is_named(base: BaseLedger, column: str) -> None:
    def edit(conn: sqlite3.Connection) -> None:
        conn.execute(f"UPDATE ledger SET {column} = CAST({column} AS TEXT) WHERE idx = 17")

    assert_exact(verify_edited(base, edit), 17)


def test_a_checkpoint_note_that_is_not_utf8_is_named(base: BaseLedger) -> None:
    cp = base.checkpoints[4]

    def edit(conn: sqlite3.Connection) -> None:
        raw = cp.note.encode().replace("\u2014".encode(), b"\xe2\x80")
        conn.execute("UPDATE checkpoints SET note = CAST(? AS TEXT) WHERE size = ?", (raw, cp.size))

    assert_exact(verify_edited(base, edit), cp.size - 1)


def test_an_edited_origin_in_the_latest_note_is_named_without_hub_org(base: BaseLedger) -> None:
    cp = base.checkpoints[-1]
    note = cp.note.replace(HUB, "hub-tesT", 1)

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note, cp.size))

    assert_exact(verify_edited(base, edit), cp.size - 1)


def test_a_body_moved_into_a_purged_entry_names_the_first_index(base: BaseLedger) -> None:
    first, last = 17, 22  # 17 has a body; 22 was purged (and is named by entry 27)
    assert base.rows[first].body is not None
    assert base.rows[last].body is None
    assert last in base.named[27]

    def edit(conn: sqlite3.Connection) -> None:
        row = base.rows[first]
        conn.execute("UPDATE ledger SET body = NULL, salt = NULL WHERE idx = ?", (first,))
        conn.execute(
            "UPDATE ledger SET body = ?, salt = ? WHERE idx = ?", (row.body, row.salt, last)
        )

    # 17 now looks purged but no purge entry names it; 22 has a body that is not its own.
    assert_exact(verify_edited(base, edit), first)


async def test_a_restarted_ledger_service_does_not_sign_a_tampered_tree(
    base: BaseLedger, tmp_path: Path
) -> None:
    path = tmp_path / "hub.sqlite3"
    path.write_bytes(base.image)
    conn = sqlite3.connect(path, isolation_level=None)
    _drop_triggers(conn)
    size = base.size
    bogus = size.to_bytes(8, "big") + bytes(32 * size.bit_count())
    conn.execute("UPDATE checkpoints SET tree = ? WHERE size = ?", (bogus, size))
    conn.close()
    db = Database(path)
    await db.open()
    try:
        ledger = LedgerService(db, base.keys, FrozenClock(1_900_000_000_000))
        await ledger.start()
        await settle_warmup()
        head = ledger.head
    finally:
        await db.close()
    # Refusing to sign is fine; signing a root that the leaves do not have is not.
    assert head is not None
    assert head.root == root_of([r.leaf_hash for r in base.rows])


def test_the_cli_fails_when_the_newest_checkpoint_is_deleted(base: BaseLedger) -> None:
    """What the verifier alone cannot prove missing, the CLI refuses to call OK: a
    stopped hub's final checkpoint covers every entry, so uncovered entries are BAD
    unless the auditor says the file is a copy of a running hub."""
    key = b64u_encode(base.keys.signing_key)

    def edit(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM checkpoints WHERE size = ?", (base.size,))

    with edited_copy(base, edit) as path:
        args = ["ledger", "verify", "--db", str(path), f"--hub-key={key}", "--json"]
        assert main(args) == 1
        assert main([*args, "--allow-uncovered"]) == 0
