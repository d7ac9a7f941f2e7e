"""The `ledger` vector of v1.json (PROTOCOL §5), made by an independent implementation."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.crypto.encoding import b64u_decode
from gateway.crypto.keys import OrgKeys
from gateway.ledger import (
    Checkpoint,
    CompactTree,
    ListSource,
    commitment,
    consistency_proof,
    inclusion_proof,
    leaf_data,
    leaf_hash,
    origin_for,
    parse_checkpoint,
    parse_leaf_data,
    root_of,
    sign_checkpoint,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from tests.vectors import load_v1

LEDGER: dict[str, Any] = load_v1()["ledger"]
ENTRIES: list[dict[str, Any]] = LEDGER["entries"]
HASHES = [bytes.fromhex(e["leaf_hash_hex"]) for e in ENTRIES]
ROOTS = {int(n): bytes.fromhex(r) for n, r in LEDGER["roots_hex_by_size"].items()}
CHECKPOINT_TIME_MS = 1795000000456


def _hub_keys() -> OrgKeys:
    org = LEDGER["signed_by"]
    raw = load_v1()["keys"][org]
    return OrgKeys.from_private(
        org, b64u_decode(raw["signing_private_key"]), b64u_decode(raw["encryption_private_key"])
    )


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"entry{e['index']}")
def test_commitment_leaf_data_and_leaf_hash(entry: dict[str, Any]) -> None:
    salt = bytes.fromhex(entry["salt_hex"])
    digest = commitment(salt, entry["body"])
    assert digest == entry["commitment"]
    data = b64u_decode(entry["leaf_data_b64u"])
    parsed = parse_leaf_data(data)
    assert parsed.index == entry["index"]
    assert parsed.commitment == digest
    assert leaf_data(entry["index"], parsed.type, parsed.time_ms, digest) == data
    assert leaf_hash(data).hex() == entry["leaf_hash_hex"]


def test_roots_for_every_size() -> None:
    assert sorted(ROOTS) == list(range(len(HASHES) + 1))
    tree = CompactTree()
    for size, root in sorted(ROOTS.items()):
        assert root_of(HASHES[:size]) == root
        assert tree.size == size
        assert tree.root() == root
        if size < len(HASHES):
            tree.append(HASHES[size])


def test_inclusion_proof() -> None:
    vector = LEDGER["inclusion"]
    index, size = vector["index"], vector["size"]
    path = inclusion_proof(index, size, ListSource(HASHES))
    assert [p.hex() for p in path] == vector["path"]
    assert verify_inclusion(index, size, HASHES[index], path, ROOTS[size])


def test_consistency_proof() -> None:
    vector = LEDGER["consistency"]
    first, second = vector["first"], vector["second"]
    path = consistency_proof(first, second, ListSource(HASHES))
    assert [p.hex() for p in path] == vector["path"]
    assert verify_consistency(first, second, ROOTS[first], ROOTS[second], path)


def test_checkpoint_note() -> None:
    keys = _hub_keys()
    origin = origin_for(LEDGER["signed_by"])
    checkpoint = Checkpoint(origin, len(HASHES), ROOTS[len(HASHES)], CHECKPOINT_TIME_MS)
    # Ed25519 is deterministic, so our signature must equal the vector's byte for byte.
    assert sign_checkpoint(keys, checkpoint) == LEDGER["checkpoint_note"]
    assert verify_checkpoint(LEDGER["checkpoint_note"], origin, keys.signing_key) == checkpoint
    parsed, signatures = parse_checkpoint(LEDGER["checkpoint_note"])
    assert parsed == checkpoint
    assert [name for name, _ in signatures] == [origin]
