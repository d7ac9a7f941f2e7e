"""Attachment streams (PROTOCOL §4.1). The header is random, so there are no fixed
vectors: round trips at the chunk boundaries, and every way of breaking a stream
(a flipped byte, a missing FINAL chunk, chunks swapped, spliced or appended, the
wrong key or header) must fail to open."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.crypto.secretstream import (
    ABYTES,
    CHUNK,
    CIPHER_CHUNK,
    HEADERBYTES,
    Decryptor,
    Encryptor,
    Sealed,
    ciphertext_size,
    decrypt_file,
    encrypt_file,
    new_key,
)
from gateway.errors import EnvelopeError


def encrypt(data: bytes, key: bytes | None = None) -> tuple[Sealed, bytes]:
    out = io.BytesIO()
    sealed = encrypt_file(io.BytesIO(data).read, out.write, key=key)
    return sealed, out.getvalue()


def decrypt(ct: bytes, key: bytes, header: bytes) -> bytes:
    out = io.BytesIO()
    size, digest = decrypt_file(io.BytesIO(ct).read, out.write, key=key, header=header)
    plain = out.getvalue()
    assert size == len(plain)
    assert digest == hashlib.sha256(plain).digest()
    return plain


def chunks_of(ct: bytes) -> list[bytes]:
    return [ct[i : i + CIPHER_CHUNK] for i in range(0, len(ct), CIPHER_CHUNK)]


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * 1024 * 1024 + 17]
)
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    sealed, ct = encrypt(data)
    assert len(ct) == sealed.cipher_size == ciphertext_size(size)
    assert sealed.plain_size == size
    assert sealed.plain_sha256 == hashlib.sha256(data).digest()
    assert sealed.cipher_sha256 == hashlib.sha256(ct).digest()
    assert len(sealed.header) == HEADERBYTES
    assert decrypt(ct, sealed.key, sealed.header) == data


def test_exact_multiple_has_no_empty_trailing_chunk() -> None:
    _, ct = encrypt(os.urandom(2 * CHUNK))
    assert [len(c) for c in chunks_of(ct)] == [CIPHER_CHUNK, CIPHER_CHUNK]


def test_empty_file_is_one_final_chunk() -> None:
    _, ct = encrypt(b"")
    assert len(ct) == ABYTES


def test_fresh_key_and_header_every_time() -> None:
    data = b"x" * 1000
    first, ct1 = encrypt(data)
    second, ct2 = encrypt(data)
    assert first.key != second.key
    assert first.header != second.header
    assert ct1 != ct2
    # Even with the same key the header (and so the ciphertext) differs.
    key = new_key()
    a, cta = encrypt(data, key)
    b, ctb = encrypt(data, key)
    assert a.header != b.header
    assert cta != ctb


def test_truncation_without_final_is_refused() -> None:
    sealed, ct = encrypt(os.urandom(3 * CHUNK + 10))
    # Drop the last (FINAL) chunk: every remaining chunk authenticates, but the end is missing.
    cut = b"".join(chunks_of(ct)[:-1])
    with pytest.raises(EnvelopeError):
        decrypt(cut, sealed.key, sealed.header)


def test_truncation_inside_a_chunk_is_refused() -> None:
    sealed, ct = encrypt(os.urandom(CHUNK + 100))
    for cut in (len(ct) - 1, CIPHER_CHUNK + 5, CIPHER_CHUNK - 1, 3):
        with pytest.raises(EnvelopeError):
            decrypt(ct[:cut], sealed.key, sealed.header)


def test_empty_stream_is_refused() -> None:
    sealed, _ = encrypt(b"abc")
    with pytest.raises(EnvelopeError):
        decrypt(b"", sealed.key, sealed.header)


def test_reordered_chunks_are_refused() -> None:
    sealed, ct = encrypt(os.urandom(3 * CHUNK))
    c = chunks_of(ct)
    with pytest.raises(EnvelopeError):
        decrypt(c[1] + c[0] + c[2], sealed.key, sealed.header)


def test_data_after_final_is_refused() -> None:
    sealed, ct = encrypt(b"hello")
    with pytest.raises(EnvelopeError):
        decrypt(ct + b"\x00", sealed.key, sealed.header)
    with pytest.raises(EnvelopeError):
        decrypt(ct + ct, sealed.key, sealed.header)


def test_chunk_from_another_stream_is_refused() -> None:
    key = new_key()
    a, cta = encrypt(os.urandom(2 * CHUNK), key)
    _, ctb = encrypt(os.urandom(2 * CHUNK), key)
    spliced = chunks_of(cta)[0] + chunks_of(ctb)[1]
    with pytest.raises(EnvelopeError):
        decrypt(spliced, key, a.header)


def test_wrong_key_or_header_is_refused() -> None:
    sealed, ct = encrypt(b"secret case file")
    with pytest.raises(EnvelopeError):
        decrypt(ct, new_key(), sealed.header)
    other, _ = encrypt(b"other")
    with pytest.raises(EnvelopeError):
        decrypt(ct, sealed.key, other.header)
    with pytest.raises(EnvelopeError):
        Decryptor(sealed.key[:-1], sealed.header)
    with pytest.raises(EnvelopeError):
        Decryptor(sealed.key, sealed.header[:-1])


def test_pushing_after_final_or_oversized_is_refused() -> None:
    enc = Encryptor(new_key())
    with pytest.raises(EnvelopeError):
        enc.push(b"x" * (CHUNK + 1), final=False)
    enc.push(b"x", final=True)
    with pytest.raises(EnvelopeError):
        enc.push(b"y", final=True)


def test_short_chunk_before_the_end_is_refused() -> None:
    # A sender that pushes a short non-final chunk breaks the framing: the recipient
    # reads fixed-size chunks, so it must notice rather than mis-split the stream.
    key = new_key()
    enc = Encryptor(key)
    ct = enc.push(b"short", final=False) + enc.push(b"end", final=True)
    with pytest.raises(EnvelopeError):
        decrypt(ct, key, enc.header)


@given(
    data=st.binary(min_size=0, max_size=3 * CHUNK + 7),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_byte_is_refused(data: bytes, position: int, flip: int) -> None:
    sealed, ct = encrypt(data)
    assert decrypt(ct, sealed.key, sealed.header) == data
    i = position % len(ct)
    broken = ct[:i] + bytes([ct[i] ^ flip]) + ct[i + 1 :]
    with pytest.raises(EnvelopeError):
        decrypt(broken, sealed.key, sealed.header)
