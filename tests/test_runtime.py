"""gateway/runtime.py: the serving process's collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.runtime import THRESHOLDS, settle_heap


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restore_gc")
def test_settle_heap_freezes_what_lives_and_collects_less_often() -> None:
    survivor = [object() for _ in range(100)]
    settle_heap()
    assert gc.get_freeze_count() > len(survivor)  # start-up objects are out of sight
    assert gc.get_threshold() == THRESHOLDS
    assert THRESHOLDS[0] > 700  # less often than CPython's default
    assert gc.isenabled()


@pytest.mark.usefixtures("restore_gc")
def test_cycles_made_after_settling_are_still_collected() -> None:
    settle_heap()

    class Node:
        other: Node | None = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    ids = {id(a), id(b)}
    del a, b
    gc.collect()
    assert not any(id(o) in ids for o in gc.get_objects() if isinstance(o, Node))
