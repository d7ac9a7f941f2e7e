"""The ledger's pure core: leaves, RFC 6962 Merkle proofs and signed checkpoints.

Owns every byte format of the hub's append-only log and the algorithms over it.
Must not do I/O, SQL or read the clock: storage reaches it through `HashSource`,
time arrives as arguments, and signing goes through `gateway.crypto.keys`.
"""

from __future__ import annotations

from gateway.ledger.checkpoint import (
    Checkpoint,
    key_hash,
    origin_for,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from gateway.ledger.leaf import (
    SALT_BYTES,
    LeafData,
    commitment,
    commitment_of,
    leaf_data,
    leaf_hash,
    new_salt,
    parse_leaf_data,
)
from gateway.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactTree,
    HashSource,
    ListSource,
    SubtreeCache,
    consistency_proof,
    inclusion_proof,
    node_hash,
    root_of,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "SALT_BYTES",
    "Checkpoint",
    "CompactTree",
    "HashSource",
    "LeafData",
    "ListSource",
    "SubtreeCache",
    "commitment",
    "commitment_of",
    "consistency_proof",
    "inclusion_proof",
    "key_hash",
    "leaf_data",
    "leaf_hash",
    "new_salt",
    "node_hash",
    "origin_for",
    "parse_checkpoint",
    "parse_leaf_data",
    "root_of",
    "sign_checkpoint",
    "subtree_root",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
]
