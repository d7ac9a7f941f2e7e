"""RFC 6962 / RFC 9162 §2.1 Merkle tree hashing, proofs and proof verification.

Owns the tree arithmetic of the ledger: node hashes, the tree head (MTH), the compact
frontier used for O(log n) appends, inclusion (PATH) and consistency (PROOF) proofs
over any `HashSource`, and the RFC 9162 verification algorithms that auditors run.

Must not: know what a leaf means (it only sees 32-byte leaf hashes), do I/O itself
(storage is reached only through the `HashSource` port the caller passes in), or read
the clock. Verifiers return False rather than raising, so that a malformed proof and a
wrong proof are the same outcome to the caller.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactTree",
    "HashSource",
    "ListSource",
    "SubtreeCache",
    "consistency_proof",
    "inclusion_proof",
    "node_hash",
    "root_of",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# RFC 9162 §2.1.1: the hash of an empty list is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

_SIZE_BYTES = 8


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 || left || right).

    The 0x01 prefix (0x00 for leaves) is the domain separation that stops a node
    from being passed off as a leaf (second-preimage attack on the tree).
    """
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than `n` (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes (RFC 9162 §2.1.1).

    Computed bottom-up, pairing neighbours and carrying an odd last node up a level
    unchanged, which yields exactly the recursive definition's tree (the largest
    power-of-two split puts every unpaired node at the right edge).
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    for item in level:
        _check_hash(item, "leaf hash")
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class CompactTree:
    """The frontier of an append-only tree: one root per set bit of `size`.

    `_nodes[j]` is the root of a complete subtree, highest first, so appending is
    a binary increment (merge while the low bit is set) and the tree head is a
    right-to-left fold. Holds O(log n) hashes; enough to append and to sign a
    checkpoint without reading a single old leaf.
    """

    __slots__ = ("_nodes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._nodes: list[bytes] = []

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> CompactTree:
        tree = cls()
        for item in leaf_hashes:
            tree.append(item)
        return tree

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf_hash: bytes, cache: SubtreeCache | None = None) -> None:
        """Add one leaf; optionally hand every completed subtree root to `cache`.

        Feeding the cache here means a store that appends through this tree never
        has to re-read old leaves to warm it.
        """
        _check_hash(leaf_hash, "leaf hash")
        index = self._size
        node = leaf_hash
        height = 0
        while (index >> height) & 1:
            node = node_hash(self._nodes.pop(), node)
            height += 1
            if cache is not None:
                cache.put(index + 1 - (1 << height), index + 1, node)
        self._nodes.append(node)
        self._size = index + 1

    def root(self) -> bytes:
        if not self._nodes:
            return EMPTY_ROOT
        result = self._nodes[-1]
        for node in reversed(self._nodes[:-1]):
            result = node_hash(node, result)
        return result

    def copy(self) -> CompactTree:
        clone = CompactTree()
        clone._size = self._size
        clone._nodes = list(self._nodes)
        return clone

    def to_bytes(self) -> bytes:
        """8-byte big-endian size, then the frontier hashes, highest subtree first."""
        return self._size.to_bytes(_SIZE_BYTES, "big") + b"".join(self._nodes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactTree:
        """Inverse of `to_bytes`; ValueError unless the length matches the size exactly."""
        if not isinstance(data, bytes) or len(data) < _SIZE_BYTES:
            raise ValueError("compact tree state too short")
        size = int.from_bytes(data[:_SIZE_BYTES], "big")
        body = data[_SIZE_BYTES:]
        if len(body) != size.bit_count() * HASH_SIZE:
            raise ValueError("compact tree state does not match its size")
        tree = cls()
        tree._size = size
        tree._nodes = [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)]
        return tree

    def __repr__(self) -> str:
        return f"CompactTree(size={self._size}, root={self.root().hex()})"


class HashSource(Protocol):
    """Port to the stored leaf hashes (a list in tests, the ledger table in a hub)."""

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        """Leaf hashes with indexes in [start, end), in order."""
        ...


class ListSource:
    """A `HashSource` over an in-memory list."""

    __slots__ = ("_hashes",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._hashes = list(leaf_hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        _check_hash(leaf_hash, "leaf hash")
        self._hashes.append(leaf_hash)

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        if not 0 <= start <= end <= len(self._hashes):
            raise ValueError(f"leaf range [{start}, {end}) outside a log of {len(self)}")
        return self._hashes[start:end]


class SubtreeCache:
    """Roots of complete, 2^k-aligned subtrees of height >= `min_height`.

    Only such subtrees are cached because in an append-only log their roots can never
    change; a right-edge (incomplete) subtree changes with every append and is always
    recomputed. A cache belongs to exactly one log: sharing one between logs would
    serve one log's roots as the other's. Memory is about n / 2^(min_height - 1)
    hashes, so proofs after warm-up read at most ~2^min_height leaves per level skipped.
    """

    __slots__ = ("_min_leaves", "_roots")

    def __init__(self, min_height: int = 8) -> None:
        if min_height < 1:
            raise ValueError("min_height must be at least 1")
        self._min_leaves = 1 << min_height
        self._roots: dict[tuple[int, int], bytes] = {}

    @property
    def min_leaves(self) -> int:
        return self._min_leaves

    def __len__(self) -> int:
        return len(self._roots)

    def cacheable(self, start: int, end: int) -> bool:
        n = end - start
        return n >= self._min_leaves and n & (n - 1) == 0 and start % n == 0

    def get(self, start: int, end: int) -> bytes | None:
        return self._roots.get((start, end))

    def put(self, start: int, end: int, root: bytes) -> None:
        """Remember a subtree root; silently ignores ranges that may not be cached."""
        if self.cacheable(start, end):
            _check_hash(root, "subtree root")
            self._roots[(start, end)] = root


def _read(source: HashSource, start: int, end: int) -> Sequence[bytes]:
    hashes = source.leaf_hashes(start, end)
    # A short read would silently give the root of a smaller tree: fail closed.
    if len(hashes) != end - start:
        raise ValueError(f"source returned {len(hashes)} leaf hashes for [{start}, {end})")
    return hashes


def _cached_root(source: HashSource, start: int, end: int, cache: SubtreeCache) -> bytes:
    n = end - start
    if n < cache.min_leaves:
        return root_of(_read(source, start, end))
    cacheable = cache.cacheable(start, end)
    if cacheable:
        hit = cache.get(start, end)
        if hit is not None:
            return hit
    if cacheable and n == cache.min_leaves:
        root = root_of(_read(source, start, end))
    else:
        # For a complete subtree k is exactly half, so its halves are cacheable too
        # and one cold proof warms every cached level beneath it.
        k = _split(n)
        left = _cached_root(source, start, start + k, cache)
        root = node_hash(left, _cached_root(source, start + k, end, cache))
    if cacheable:
        cache.put(start, end, root)
    return root


def subtree_root(
    source: HashSource, start: int, end: int, cache: SubtreeCache | None = None
) -> bytes:
    """MTH(D[start:end]); with a cache, complete aligned subtrees come from memory."""
    if not 0 <= start < end:
        raise ValueError(f"empty or negative leaf range [{start}, {end})")
    if cache is None:
        return root_of(_read(source, start, end))
    return _cached_root(source, start, end, cache)


def inclusion_proof(
    index: int, size: int, source: HashSource, cache: SubtreeCache | None = None
) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), leaf-side sibling first.

    The caller checks `size` against the log; reads past the end raise ValueError.
    """
    if not 0 <= index < size:
        raise ValueError(f"index {index} outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    # Walk the recursion top-down; PATH emits the deepest sibling first, so reverse.
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            path.append(subtree_root(source, mid, end, cache))
            end = mid
        else:
            path.append(subtree_root(source, start, mid, cache))
            start = mid
    path.reverse()
    return path


def consistency_proof(
    first: int, second: int, source: HashSource, cache: SubtreeCache | None = None
) -> list[bytes]:
    """PROOF(first, D[0:second]) (RFC 9162 §2.1.4.1); [] when first is 0 or second."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    path: list[bytes] = []
    start, end = 0, second
    m = first  # the old size, relative to `start`
    complete = True  # SUBPROOF's b: is D[start:start+m] a subtree the verifier knows?
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            path.append(subtree_root(source, start + k, end, cache))
            end = start + k
        else:
            path.append(subtree_root(source, start, start + k, cache))
            start += k
            m -= k
            complete = False
    if not complete:
        path.append(subtree_root(source, start, end, cache))
    path.reverse()
    return path


def _valid_hashes(*values: object) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` show leaf `index` in the tree (`size`, `root`)?

    Like the RFC's algorithm this binds the leaf to `root`; `size` only shapes the
    walk. Take `size` and `root` together from one signed checkpoint.
    """
    if not 0 <= index < size or not _valid_hashes(leaf_hash, root, *proof):
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is tree (`second`, `second_root`) an extension of the first?"""
    if not 0 <= first <= second or not _valid_hashes(first_root, second_root, *proof):
        return False
    if first == second:
        return not proof and hmac.compare_digest(first_root, second_root)
    if first == 0:
        # Every tree extends the empty tree; nothing to prove, but the claimed old
        # root must really be the empty one.
        return not proof and hmac.compare_digest(first_root, EMPTY_ROOT)
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        # The old tree is itself a complete subtree, so the proof omits its root.
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, first_root) and hmac.compare_digest(sr, second_root)
