"""Ledger leaves (PROTOCOL §5): salted commitments, leaf data and leaf hashes.

Owns the one byte form of a leaf: the canonical JSON
`{"v":1,"index":i,"type":t,"time_ms":ms,"commitment":hex}` and its RFC 6962 leaf
hash SHA-256(0x00 || leaf data). The body never enters the tree: only its salted
commitment does, so that purging body and salt leaves every proof intact while
making the body unrecoverable from the ledger.

Must not: read the clock (time is passed in), touch storage, or know what an entry
body means. `new_salt` is the one place that reads the OS (its CSPRNG).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.crypto.canonical import canonical_json

__all__ = [
    "SALT_BYTES",
    "LeafData",
    "commitment",
    "leaf_data",
    "leaf_hash",
    "new_salt",
    "parse_leaf_data",
]

SALT_BYTES = 32
LEAF_VERSION = 1

# I-JSON (RFC 7493) safe integers: the largest an RFC 8785 encoder spells exactly.
_MAX_SAFE_INT = 2**53 - 1
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_LEAF_KEYS = frozenset({"v", "index", "type", "time_ms", "commitment"})


@dataclass(frozen=True, slots=True)
class LeafData:
    """The parsed fields of one leaf's data (the `v` field is always 1)."""

    index: int
    type: str
    time_ms: int
    commitment: str


def new_salt() -> bytes:
    """A fresh random salt; its secrecy is what keeps a low-entropy body unguessable."""
    return os.urandom(SALT_BYTES)


def commitment(salt: bytes, body: Mapping[str, Any]) -> str:
    """Lower-case hex SHA-256(salt || canonical JSON of `body`)."""
    return commitment_of(salt, canonical_json(body))


def commitment_of(salt: bytes, canonical_body: bytes) -> str:
    """The same, for a body that is already canonical JSON (what the store keeps)."""
    if not isinstance(salt, bytes) or len(salt) != SALT_BYTES:
        # A short salt would let an auditor brute-force small bodies from the
        # commitment alone; refuse rather than weaken the hiding property.
        raise ValueError(f"salt must be {SALT_BYTES} bytes")
    return hashlib.sha256(salt + canonical_body).hexdigest()


def _check_int(name: str, value: object) -> int:
    # bool is an int subclass; True must not stand in for 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if not 0 <= value <= _MAX_SAFE_INT:
        raise ValueError(f"{name} out of range")
    return value


def leaf_data(index: int, entry_type: str, time_ms: int, commitment_hex: str) -> bytes:
    """The canonical leaf-data bytes of entry `index`."""
    _check_int("index", index)
    _check_int("time_ms", time_ms)
    if not isinstance(entry_type, str) or not entry_type:
        raise ValueError("type must be a non-empty string")
    if not isinstance(commitment_hex, str) or _HEX_SHA256.fullmatch(commitment_hex) is None:
        raise ValueError("commitment must be 64 lower-case hex digits")
    # Written directly (every append pays for it): the keys in RFC 8785 order, the
    # integers and hex as JSON, and the type through the canonical string encoder.
    # tests/ledger pins this byte for byte to canonical_json of the same object.
    return (
        f'{{"commitment":"{commitment_hex}","index":{index},"time_ms":{time_ms},'
        f'"type":{canonical_json(entry_type).decode()},"v":{LEAF_VERSION}}}'
    ).encode()


def parse_leaf_data(data: bytes) -> LeafData:
    """Parse leaf data strictly; ValueError unless `data` is exactly the canonical form.

    The final re-encoding check is what makes the bytes <-> fields mapping one-to-one:
    it rejects duplicate keys, whitespace, escapes and number spellings that a lenient
    JSON parser would accept, so two different leaf hashes never mean the same entry.
    """
    if not isinstance(data, bytes):
        raise ValueError("leaf data must be bytes")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("leaf data is not JSON") from exc
    if not isinstance(value, dict) or set(value) != _LEAF_KEYS:
        raise ValueError("leaf data must hold exactly v, index, type, time_ms, commitment")
    version = value["v"]
    if isinstance(version, bool) or version != LEAF_VERSION or not isinstance(version, int):
        raise ValueError("unsupported leaf data version")
    parsed = LeafData(
        index=_check_int("index", value["index"]),
        type=value["type"],
        time_ms=_check_int("time_ms", value["time_ms"]),
        commitment=value["commitment"],
    )
    if leaf_data(parsed.index, parsed.type, parsed.time_ms, parsed.commitment) != data:
        raise ValueError("leaf data is not in canonical form")
    return parsed


def leaf_hash(leaf_data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || leaf data)."""
    return hashlib.sha256(b"\x00" + leaf_data).digest()
