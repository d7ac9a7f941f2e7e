"""Merkle core against a naive transcription of RFC 6962 §2.1, plus mutation properties.

The `_naive_*` functions below are the recursive definitions copied as literally as
possible (lists, slicing, no caching) so that they share no code or shortcut with
`gateway.ledger.merkle`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.ledger.merkle import (
    EMPTY_ROOT,
    CompactTree,
    ListSource,
    SubtreeCache,
    consistency_proof,
    inclusion_proof,
    root_of,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

GOLDEN_MAX = 64


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _leaves(n: int, seed: bytes = b"") -> list[bytes]:
    """Distinct leaf hashes: distinctness keeps "no collision" arguments honest."""
    return [_h(b"\x00" + seed + i.to_bytes(8, "big")) for i in range(n)]


def _naive_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _naive_mth(d: Sequence[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return d[0]
    k = _naive_k(n)
    return _h(b"\x01" + _naive_mth(d[:k]) + _naive_mth(d[k:]))


def _naive_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _naive_k(n)
    if m < k:
        return [*_naive_path(m, d[:k]), _naive_mth(d[k:])]
    return [*_naive_path(m - k, d[k:]), _naive_mth(d[:k])]


def _naive_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [_naive_mth(d)]
    k = _naive_k(n)
    if m <= k:
        return [*_naive_subproof(m, d[:k], b), _naive_mth(d[k:])]
    return [*_naive_subproof(m - k, d[k:], False), _naive_mth(d[:k])]


def _naive_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return _naive_subproof(m, d, True)


LEAVES = _leaves(GOLDEN_MAX)
SOURCE = ListSource(LEAVES)
NAIVE_ROOTS = [_naive_mth(LEAVES[:n]) for n in range(GOLDEN_MAX + 1)]


class CountingSource:
    """A HashSource that counts what it reads, to show the cache really saves reads."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self.inner = ListSource(hashes)
        self.calls = 0
        self.leaves_read = 0

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        self.calls += 1
        self.leaves_read += end - start
        return self.inner.leaf_hashes(start, end)


# -- golden: every size and index up to 64 -------------------------------------------


def test_empty_root_is_hash_of_empty_string() -> None:
    assert _h(b"") == EMPTY_ROOT
    assert root_of([]) == EMPTY_ROOT
    assert CompactTree().root() == EMPTY_ROOT


def test_root_of_matches_naive_mth() -> None:
    for n in range(GOLDEN_MAX + 1):
        assert root_of(LEAVES[:n]) == NAIVE_ROOTS[n]


@pytest.mark.parametrize("min_height", [None, 1, 2, 3])
def test_inclusion_proofs_match_naive_path(min_height: int | None) -> None:
    cache = None if min_height is None else SubtreeCache(min_height)
    for size in range(1, GOLDEN_MAX + 1):
        for index in range(size):
            proof = inclusion_proof(index, size, SOURCE, cache)
            assert proof == _naive_path(index, LEAVES[:size]), (index, size)
            assert verify_inclusion(index, size, LEAVES[index], proof, NAIVE_ROOTS[size])


@pytest.mark.parametrize("min_height", [None, 1, 2, 3])
def test_consistency_proofs_match_naive_proof(min_height: int | None) -> None:
    cache = None if min_height is None else SubtreeCache(min_height)
    for second in range(1, GOLDEN_MAX + 1):
        for first in range(1, second + 1):
            proof = consistency_proof(first, second, SOURCE, cache)
            expected = [] if first == second else _naive_proof(first, LEAVES[:second])
            assert proof == expected, (first, second)
            assert verify_consistency(first, second, NAIVE_ROOTS[first], NAIVE_ROOTS[second], proof)


def test_compact_tree_matches_root_of_and_round_trips() -> None:
    tree = CompactTree()
    for size in range(GOLDEN_MAX + 1):
        assert tree.size == size
        assert tree.root() == NAIVE_ROOTS[size]
        restored = CompactTree.from_bytes(tree.to_bytes())
        assert restored.size == size
        assert restored.root() == NAIVE_ROOTS[size]
        assert restored.to_bytes() == tree.to_bytes()
        if size < GOLDEN_MAX:
            # The restored frontier must keep appending exactly like the original.
            restored.append(LEAVES[size])
            tree.append(LEAVES[size])
            assert restored.root() == tree.root()
    assert CompactTree.from_leaf_hashes(LEAVES).root() == NAIVE_ROOTS[GOLDEN_MAX]


def test_compact_tree_copy_is_independent() -> None:
    tree = CompactTree.from_leaf_hashes(LEAVES[:5])
    clone = tree.copy()
    clone.append(LEAVES[5])
    assert tree.size == 5
    assert tree.root() == NAIVE_ROOTS[5]
    assert clone.root() == NAIVE_ROOTS[6]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 7,
        (1).to_bytes(8, "big"),  # size 1 needs one hash
        (2).to_bytes(8, "big") + b"\x00" * 31,
        (0).to_bytes(8, "big") + b"\x00" * 32,  # size 0 takes none
        (3).to_bytes(8, "big") + b"\x00" * 32,  # size 3 needs two
    ],
)
def test_compact_tree_from_bytes_rejects_bad_lengths(data: bytes) -> None:
    with pytest.raises(ValueError):
        CompactTree.from_bytes(data)


# -- argument checks ------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3), (0, 0), (5, 4)])
def test_inclusion_proof_rejects_out_of_range(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        inclusion_proof(index, size, SOURCE)


@pytest.mark.parametrize(("first", "second"), [(-1, 3), (4, 3), (0, -1)])
def test_consistency_proof_rejects_out_of_range(first: int, second: int) -> None:
    with pytest.raises(ValueError):
        consistency_proof(first, second, SOURCE)


def test_trivial_consistency_proofs_are_empty() -> None:
    assert consistency_proof(0, 10, SOURCE) == []
    assert consistency_proof(7, 7, SOURCE) == []
    assert verify_consistency(0, 10, EMPTY_ROOT, NAIVE_ROOTS[10], [])
    assert not verify_consistency(0, 10, NAIVE_ROOTS[1], NAIVE_ROOTS[10], [])
    assert verify_consistency(7, 7, NAIVE_ROOTS[7], NAIVE_ROOTS[7], [])
    assert not verify_consistency(7, 7, NAIVE_ROOTS[7], NAIVE_ROOTS[6], [])
    assert not verify_consistency(7, 7, NAIVE_ROOTS[7], NAIVE_ROOTS[7], [NAIVE_ROOTS[7]])


def test_reads_past_the_end_of_the_source_fail() -> None:
    small = ListSource(LEAVES[:4])
    with pytest.raises(ValueError):
        inclusion_proof(0, 8, small)
    with pytest.raises(ValueError):
        consistency_proof(2, 8, small, SubtreeCache(1))

    class ShortSource:
        def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
            return LEAVES[start : end - 1]

    with pytest.raises(ValueError):
        subtree_root(ShortSource(), 0, 4)


def test_malformed_hashes_never_verify() -> None:
    proof = inclusion_proof(3, 8, SOURCE)
    assert not verify_inclusion(3, 8, LEAVES[3][:31], proof, NAIVE_ROOTS[8])
    assert not verify_inclusion(3, 8, LEAVES[3], [*proof[:-1], proof[-1] + b"\x00"], NAIVE_ROOTS[8])
    with pytest.raises(ValueError):
        root_of([b"short"])
    with pytest.raises(ValueError):
        CompactTree().append(b"\x00" * 33)


def test_size_alone_is_not_bound_by_an_inclusion_proof() -> None:
    # RFC 9162's verifier binds the leaf to the root; the size only steers the walk,
    # so index 0 verifies against the size-3 root with size 3 or 4 alike. This is why
    # callers take size and root together from one verified checkpoint.
    proof = inclusion_proof(0, 3, SOURCE)
    assert verify_inclusion(0, 4, LEAVES[0], proof, NAIVE_ROOTS[3])
    assert not verify_inclusion(0, 4, LEAVES[0], proof, NAIVE_ROOTS[4])


# -- the subtree cache ----------------------------------------------------------------


def test_cache_only_holds_complete_aligned_subtrees() -> None:
    cache = SubtreeCache(min_height=2)
    cache.put(0, 4, NAIVE_ROOTS[4])
    cache.put(4, 8, _naive_mth(LEAVES[4:8]))
    cache.put(2, 6, b"\x00" * 32)  # not aligned
    cache.put(0, 3, NAIVE_ROOTS[3])  # not complete
    cache.put(0, 2, NAIVE_ROOTS[2])  # below the threshold
    assert len(cache) == 2
    assert cache.get(2, 6) is None
    with pytest.raises(ValueError):
        SubtreeCache(min_height=0)


def test_warm_cache_bounds_reads_per_proof() -> None:
    n, min_height = 5000, 4
    leaves = _leaves(n, b"big")
    source = CountingSource(leaves)
    cache = SubtreeCache(min_height)
    tree = CompactTree()
    for item in leaves:
        tree.append(item, cache)  # appends warm the cache: no leaf is read back
    root = tree.root()
    assert root == root_of(leaves)
    # n / 2^(min_height - 1) bounds the cache; the exact count is one per complete node.
    assert len(cache) <= n // 2 ** (min_height - 1)
    for index in (0, 1, 2047, 2048, 4095, 4096, 4999):
        source.calls = source.leaves_read = 0
        proof = inclusion_proof(index, n, source, cache)
        assert verify_inclusion(index, n, leaves[index], proof, root)
        assert proof == inclusion_proof(index, n, ListSource(leaves))
        # Below-threshold siblings plus one right-edge remainder, each < 2^min_height.
        assert source.leaves_read < 2 ** (min_height + 1)
        assert source.calls <= 2 * n.bit_length()
    for first in (1, 17, 2048, 3000, 4999):
        source.calls = source.leaves_read = 0
        proof = consistency_proof(first, n, source, cache)
        assert verify_consistency(first, n, root_of(leaves[:first]), root, proof)
        assert source.leaves_read < 2 ** (min_height + 2)


def test_cold_cache_fills_on_first_proof() -> None:
    leaves = _leaves(1000, b"cold")
    source = CountingSource(leaves)
    cache = SubtreeCache(min_height=3)
    first = inclusion_proof(500, 1000, source, cache)
    cold_reads = source.leaves_read
    source.leaves_read = 0
    assert inclusion_proof(500, 1000, source, cache) == first
    assert source.leaves_read < cold_reads
    assert source.leaves_read < 2**4


# -- hypothesis: any mutation fails -----------------------------------------------------

MUTATION_MAX = 80
MUTATION_LEAVES = _leaves(MUTATION_MAX + 1, b"mutation")
MUTATION_SOURCE = ListSource(MUTATION_LEAVES)
MUTATION_ROOTS = [root_of(MUTATION_LEAVES[:n]) for n in range(MUTATION_MAX + 2)]


@st.composite
def _index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(min_value=1, max_value=MUTATION_MAX))
    return draw(st.integers(min_value=0, max_value=size - 1)), size


@st.composite
def _first_and_second(draw: st.DrawFn) -> tuple[int, int]:
    second = draw(st.integers(min_value=2, max_value=MUTATION_MAX))
    return draw(st.integers(min_value=1, max_value=second - 1)), second


def _flip(value: bytes, position: int, mask: int) -> bytes:
    position %= len(value)
    return value[:position] + bytes([value[position] ^ mask]) + value[position + 1 :]


_MASK = st.integers(min_value=1, max_value=255)


@given(_index_and_size(), st.binary(min_size=32, max_size=32))
def test_inclusion_fails_for_another_leaf(case: tuple[int, int], other: bytes) -> None:
    index, size = case
    assume(other != MUTATION_LEAVES[index])
    proof = inclusion_proof(index, size, MUTATION_SOURCE)
    assert not verify_inclusion(index, size, other, proof, MUTATION_ROOTS[size])


@given(_index_and_size(), st.data())
def test_inclusion_fails_for_any_changed_proof_element(
    case: tuple[int, int], data: st.DataObject
) -> None:
    index, size = case
    proof = inclusion_proof(index, size, MUTATION_SOURCE)
    assume(proof)
    i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    proof[i] = _flip(proof[i], data.draw(st.integers(0, 31)), data.draw(_MASK))
    assert not verify_inclusion(index, size, MUTATION_LEAVES[index], proof, MUTATION_ROOTS[size])


@given(_index_and_size(), st.data())
def test_inclusion_fails_for_a_shorter_or_longer_proof(
    case: tuple[int, int], data: st.DataObject
) -> None:
    index, size = case
    proof = inclusion_proof(index, size, MUTATION_SOURCE)
    leaf, root = MUTATION_LEAVES[index], MUTATION_ROOTS[size]
    extra = data.draw(st.binary(min_size=32, max_size=32))
    assert not verify_inclusion(index, size, leaf, [*proof, extra], root)
    if proof:
        assert not verify_inclusion(index, size, leaf, proof[:-1], root)
        assert not verify_inclusion(index, size, leaf, proof[1:], root)


@given(_index_and_size(), st.integers(min_value=-2, max_value=MUTATION_MAX + 2))
def test_inclusion_fails_for_another_index(case: tuple[int, int], other: int) -> None:
    index, size = case
    assume(other != index)
    proof = inclusion_proof(index, size, MUTATION_SOURCE)
    assert not verify_inclusion(other, size, MUTATION_LEAVES[index], proof, MUTATION_ROOTS[size])


@given(_index_and_size(), st.integers(min_value=0, max_value=MUTATION_MAX + 1))
def test_inclusion_fails_for_another_size(case: tuple[int, int], other: int) -> None:
    index, size = case
    assume(other != size)
    proof = inclusion_proof(index, size, MUTATION_SOURCE)
    # The honest root of the claimed size: what a verifier holds from that checkpoint.
    assert not verify_inclusion(index, other, MUTATION_LEAVES[index], proof, MUTATION_ROOTS[other])


@given(_index_and_size(), st.integers(0, 31), _MASK)
def test_inclusion_fails_for_another_root(case: tuple[int, int], pos: int, mask: int) -> None:
    index, size = case
    proof = inclusion_proof(index, size, MUTATION_SOURCE)
    root = _flip(MUTATION_ROOTS[size], pos, mask)
    assert not verify_inclusion(index, size, MUTATION_LEAVES[index], proof, root)


@given(_first_and_second(), st.data())
def test_consistency_fails_for_any_changed_proof_element(
    case: tuple[int, int], data: st.DataObject
) -> None:
    first, second = case
    proof = consistency_proof(first, second, MUTATION_SOURCE)
    i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    proof[i] = _flip(proof[i], data.draw(st.integers(0, 31)), data.draw(_MASK))
    roots = MUTATION_ROOTS
    assert not verify_consistency(first, second, roots[first], roots[second], proof)


@given(_first_and_second(), st.data())
def test_consistency_fails_for_a_shorter_or_longer_proof(
    case: tuple[int, int], data: st.DataObject
) -> None:
    first, second = case
    proof = consistency_proof(first, second, MUTATION_SOURCE)
    roots = MUTATION_ROOTS
    extra = data.draw(st.binary(min_size=32, max_size=32))
    assert not verify_consistency(first, second, roots[first], roots[second], [*proof, extra])
    assert not verify_consistency(first, second, roots[first], roots[second], proof[:-1])
    assert not verify_consistency(first, second, roots[first], roots[second], proof[1:])


@given(_first_and_second(), st.booleans(), st.integers(0, 31), _MASK)
def test_consistency_fails_for_another_root(
    case: tuple[int, int], old: bool, pos: int, mask: int
) -> None:
    first, second = case
    proof = consistency_proof(first, second, MUTATION_SOURCE)
    first_root, second_root = MUTATION_ROOTS[first], MUTATION_ROOTS[second]
    if old:
        first_root = _flip(first_root, pos, mask)
    else:
        second_root = _flip(second_root, pos, mask)
    assert not verify_consistency(first, second, first_root, second_root, proof)


@given(
    _first_and_second(),
    st.integers(min_value=0, max_value=MUTATION_MAX + 1),
    st.integers(min_value=0, max_value=MUTATION_MAX + 1),
)
def test_consistency_fails_for_other_sizes(
    case: tuple[int, int], other_first: int, other_second: int
) -> None:
    first, second = case
    assume((other_first, other_second) != (first, second))
    proof = consistency_proof(first, second, MUTATION_SOURCE)
    roots = MUTATION_ROOTS
    assert not verify_consistency(
        other_first, other_second, roots[other_first], roots[other_second], proof
    )
    # The claimed sizes with the original roots fail too unless the walk happens to
    # have the same shape; we only assert the roots cannot be re-labelled freely.
    if other_first != first:
        assert not verify_consistency(other_first, second, roots[first], roots[second], proof)


@given(st.integers(min_value=2, max_value=MUTATION_MAX), st.data())
def test_swapping_two_leaves_changes_the_root(size: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=0, max_value=size - 2))
    j = data.draw(st.integers(min_value=i + 1, max_value=size - 1))
    leaves = list(MUTATION_LEAVES[:size])
    leaves[i], leaves[j] = leaves[j], leaves[i]
    assert root_of(leaves) != MUTATION_ROOTS[size]
    assert CompactTree.from_leaf_hashes(leaves).root() != MUTATION_ROOTS[size]
