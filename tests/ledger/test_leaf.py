"""Leaf data: one canonical spelling per leaf, salted commitments."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.crypto.canonical import canonical_json
from gateway.ledger.leaf import (
    SALT_BYTES,
    LeafData,
    commitment,
    leaf_data,
    leaf_hash,
    new_salt,
    parse_leaf_data,
)

DIGEST = "ab" * 32
GOOD = leaf_data(3, "dat-request", 1795000000000, DIGEST)


def test_leaf_data_is_canonical_json_with_sorted_keys() -> None:
    assert (
        b'{"commitment":"' + DIGEST.encode() + b'","index":3,"time_ms":1795000000000,'
        b'"type":"dat-request","v":1}'
    ) == GOOD
    assert parse_leaf_data(GOOD) == LeafData(3, "dat-request", 1795000000000, DIGEST)


def test_leaf_hash_has_the_leaf_prefix() -> None:
    assert leaf_hash(GOOD) == hashlib.sha256(b"\x00" + GOOD).digest()


def test_commitment_is_salted_hash_of_canonical_body() -> None:
    salt = bytes(range(32))
    body = {"b": [1, "x"], "a": None}
    expected = hashlib.sha256(salt + canonical_json(body)).hexdigest()
    assert commitment(salt, body) == expected
    assert commitment(new_salt(), body) != expected


def test_new_salt_is_fresh() -> None:
    salts = {new_salt() for _ in range(16)}
    assert len(salts) == 16
    assert all(len(s) == SALT_BYTES for s in salts)


@pytest.mark.parametrize("salt", [b"", b"\x00" * 31, b"\x00" * 33])
def test_commitment_rejects_wrong_salt_length(salt: bytes) -> None:
    with pytest.raises(ValueError):
        commitment(salt, {})


def test_commitment_rejects_floats() -> None:
    with pytest.raises(ValueError):
        commitment(b"\x00" * 32, {"x": 1.5})


@pytest.mark.parametrize(
    ("index", "entry_type", "time_ms", "digest"),
    [
        (-1, "t", 0, DIGEST),
        (True, "t", 0, DIGEST),
        (2**53, "t", 0, DIGEST),
        (0, "", 0, DIGEST),
        (0, "t", -1, DIGEST),
        (0, "t", 0, DIGEST.upper()),
        (0, "t", 0, DIGEST[:-2]),
    ],
)
def test_leaf_data_rejects_bad_fields(
    index: int, entry_type: str, time_ms: int, digest: str
) -> None:
    with pytest.raises(ValueError):
        leaf_data(index, entry_type, time_ms, digest)


def _replace(old: bytes, new: bytes) -> bytes:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"\xff",
        GOOD + b"\n",
        b" " + GOOD,
        _replace(b'"v":1', b'"v":2'),
        _replace(b'"v":1', b'"v":true'),
        _replace(b'"v":1', b'"v":1.0'),
        _replace(b'"v":1}', b'"v":1,"x":0}'),
        _replace(b',"v":1', b""),
        _replace(b'"index":3', b'"index":"3"'),
        _replace(b'"index":3', b'"index":03'),
        _replace(b'"index":3', b'"index":-3'),
        _replace(b'"index":3', b'"index":3,"index":3'),
        _replace(b'"dat-request"', b'"dat\\u002drequest"'),
        _replace(DIGEST.encode(), DIGEST.upper().encode()),
        # The same fields in non-canonical key order.
        _replace(
            b'"time_ms":1795000000000,"type":"dat-request"',
            b'"type":"dat-request","time_ms":1795000000000',
        ),
    ],
)
def test_parse_rejects_anything_but_the_canonical_form(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_leaf_data(data)


@given(
    st.integers(min_value=0, max_value=2**53 - 1),
    st.text(min_size=1, max_size=40),
    st.integers(min_value=0, max_value=2**53 - 1),
    st.binary(min_size=32, max_size=32),
)
def test_parse_round_trips(index: int, entry_type: str, time_ms: int, digest: bytes) -> None:
    data = leaf_data(index, entry_type, time_ms, digest.hex())
    assert parse_leaf_data(data) == LeafData(index, entry_type, time_ms, digest.hex())


@given(
    index=st.integers(min_value=0, max_value=2**53 - 1),
    time_ms=st.integers(min_value=0, max_value=2**53 - 1),
    entry_type=st.text(min_size=1, max_size=40),
    commitment_hex=st.binary(min_size=32, max_size=32).map(bytes.hex),
)
def test_leaf_data_is_the_canonical_json_of_its_fields(
    index: int, time_ms: int, entry_type: str, commitment_hex: str
) -> None:
    """leaf_data is formatted directly for speed; it must equal RFC 8785 byte for byte."""
    expected = canonical_json(
        {
            "v": 1,
            "index": index,
            "type": entry_type,
            "time_ms": time_ms,
            "commitment": commitment_hex,
        }
    )
    assert leaf_data(index, entry_type, time_ms, commitment_hex) == expected
