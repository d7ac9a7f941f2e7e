from __future__ import annotations

import json
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.crypto.canonical import _reference_json, canonical_json, canonical_sha256
from gateway.crypto.encoding import b64u_decode, sha256
from tests.vectors import load_v1

_SAFE_INT = 2**53 - 1

_SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-_SAFE_INT, max_value=_SAFE_INT) | st.text()
)


def _json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        _SCALARS,
        lambda children: (
            st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=30,
    )


json_values = _json_values(st.text())
# ASCII keys (the fast path) with any string values, control characters included.
ascii_key_values = _json_values(st.text(st.characters(max_codepoint=0x7F)))


def test_vector() -> None:
    vector = load_v1()["canonical_json"]
    assert canonical_json(vector["input"]) == b64u_decode(vector["output_utf8_b64u"])


def test_sorts_keys_by_utf16_and_has_no_whitespace() -> None:
    # U+1F600 is a surrogate pair in UTF-16 (0xD83D...), which sorts before U+E000,
    # unlike a sort by code point.
    assert canonical_json({"\ue000": 1, "\U0001f600": 2, "a": [1, True, None]}) == (
        '{"a":[1,true,null],"\U0001f600":2,"\ue000":1}'.encode()
    )


def test_accepts_any_mapping_and_tuples() -> None:
    assert canonical_json(MappingProxyType({"b": (1, 2), "a": "x"})) == b'{"a":"x","b":[1,2]}'


def test_sha256_of_canonical_form() -> None:
    assert canonical_sha256({"b": 1, "a": 2}) == sha256(b'{"a":2,"b":1}')


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        {"a": 0.5},
        [1, [2, {"x": 1e10}]],
        {1: "non-str key"},
        {"a": b"bytes"},
        {"a": {1, 2}},
        2**53,  # beyond the exact range of an IEEE double
        "\ud800",  # lone surrogate: not UTF-8
    ],
)
def test_rejects_what_cannot_be_signed(value: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)


@given(json_values)
def test_output_is_json_that_parses_back(value: Any) -> None:
    out = canonical_json(value)
    assert json.loads(out.decode("utf-8")) == value


@given(json_values)
def test_idempotent(value: Any) -> None:
    out = canonical_json(value)
    assert canonical_json(json.loads(out)) == out


@given(ascii_key_values)
def test_fast_path_is_byte_identical_to_rfc8785(value: Any) -> None:
    assert canonical_json(value) == _reference_json(value)


@given(json_values)
def test_any_keys_are_byte_identical_to_rfc8785(value: Any) -> None:
    assert canonical_json(value) == _reference_json(value)


def test_escapes_match_rfc8785() -> None:
    text = "".join(chr(c) for c in range(0x80)) + "\u2028\u2029\ufeff\U0001f600é"
    value = {"s": text, 'k\n"': [text]}
    assert canonical_json(value) == _reference_json(value)
    assert canonical_json("\x1f\x7f") == b'"\\u001f\x7f"'


def test_int_enum_and_str_subclasses_serialise_as_values() -> None:
    class Level(IntEnum):
        HIGH = 3

    class Kind(StrEnum):
        DAT = "dat-request"

    assert canonical_json({"l": Level.HIGH, "k": Kind.DAT}) == b'{"k":"dat-request","l":3}'
