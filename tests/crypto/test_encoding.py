from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.crypto.encoding import b64_decode, b64_encode, b64u_decode, b64u_encode, sha256


@given(st.binary(max_size=200))
def test_b64u_round_trip(data: bytes) -> None:
    text = b64u_encode(data)
    assert "=" not in text
    assert b64u_decode(text) == data


@given(st.binary(max_size=200))
def test_b64_round_trip(data: bytes) -> None:
    assert b64_decode(b64_encode(data)) == data


def test_b64u_known_value() -> None:
    assert b64u_encode(b"\xfb\xff\xfe") == "-__-"
    assert b64u_decode("-__-") == b"\xfb\xff\xfe"
    assert b64u_decode("") == b""


@pytest.mark.parametrize(
    "text",
    [
        "QQ==",  # padding
        "QQ=",
        "Q Q",  # whitespace
        "QQ\n",
        " QQ",
        "+/8",  # standard alphabet
        "QQ!",
        "QÉ",  # non-ASCII
        "Q",  # impossible length
        "QR",  # non-zero trailing bits (canonical: "QQ")
        "QUJ",  # non-zero trailing bits (canonical: "QUI")
    ],
)
def test_b64u_decode_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        b64u_decode(text)


@pytest.mark.parametrize(
    "text",
    [
        "QQ",  # missing padding
        "QQ=",
        "QQ===",  # extra padding
        "QQ==\n",
        "Q Q==",
        "-_8=",  # url alphabet
        "QR==",  # non-zero trailing bits
        "QUJ=",
    ],
)
def test_b64_decode_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        b64_decode(text)


def test_decoders_reject_non_strings() -> None:
    with pytest.raises(ValueError):
        b64u_decode(b"QQ")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b64_decode(None)  # type: ignore[arg-type]


def test_sha256() -> None:
    assert sha256(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


B64U_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _reference_b64u_decode(text: str) -> bytes:
    """The obvious strict decoder: decode, then require that encoding gives `text` back."""
    if len(text) % 4 == 1:
        raise ValueError("impossible length")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64u_encode(data) != text:
        raise ValueError("non-canonical")
    return data


def _decoded(decode: Callable[[str], bytes], text: str) -> bytes | None:
    try:
        return decode(text)
    except ValueError:
        return None


@given(st.text(alphabet=B64U_ALPHABET))
def test_b64u_decode_accepts_what_the_reference_accepts(text: str) -> None:
    """The unused-bits check on the last character refuses exactly the strings whose
    bytes would encode to another spelling."""
    assert _decoded(b64u_decode, text) == _decoded(_reference_b64u_decode, text)


def test_b64u_every_last_character() -> None:
    """All 64 last characters after each length: accepted exactly when canonical."""
    for prefix in ("", "Q", "QU", "QUJD"):
        for last in B64U_ALPHABET:
            text = prefix + last
            assert _decoded(b64u_decode, text) == _decoded(_reference_b64u_decode, text), text
