"""Attachments (PROTOCOL §4.1): libsodium crypto_secretstream_xchacha20poly1305.

Owns the chunked, authenticated stream encryption of files: a fresh random key per
file, 64 KiB plaintext chunks, the last one tagged FINAL, so that no side (sender,
hub, recipient) ever holds a whole file in memory, and a truncated, reordered or
spliced stream fails to open. The ciphertext of a stream is the concatenation of
its chunks (each `len(plain) + ABYTES`); the header travels in the sealed message
body next to the key, never with the blob.

Every failure is one `EnvelopeError` whose `reason` is for the log only. Must not
do file or network I/O beyond the file objects callers hand in, and must not log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from nacl import bindings as sodium
from nacl.exceptions import CryptoError as _NaclError

from gateway.errors import EnvelopeError

__all__ = [
    "ABYTES",
    "CHUNK",
    "CIPHER_CHUNK",
    "HEADERBYTES",
    "KEYBYTES",
    "Decryptor",
    "Encryptor",
    "Sealed",
    "ciphertext_size",
    "decrypt_file",
    "encrypt_file",
    "new_key",
]

CHUNK = 64 * 1024
ABYTES: int = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
HEADERBYTES: int = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
KEYBYTES: int = sodium.crypto_secretstream_xchacha20poly1305_KEYBYTES
CIPHER_CHUNK = CHUNK + ABYTES
_TAG_MESSAGE: int = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL: int = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL

Read = Callable[[int], bytes]
Write = Callable[[bytes], object]


def _fail(reason: str) -> NoReturn:
    raise EnvelopeError(reason)


def new_key() -> bytes:
    """A fresh random stream key (one per file, never reused)."""
    key: bytes = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    return key


def ciphertext_size(plain_size: int) -> int:
    """Bytes of ciphertext for `plain_size` bytes of plaintext (an empty file is one
    empty FINAL chunk, so a stream is never empty)."""
    chunks = max(1, -(-plain_size // CHUNK))
    return plain_size + chunks * ABYTES


class Encryptor:
    """Push side of one stream. `header` goes to the recipient with the key."""

    __slots__ = ("_done", "_state", "header")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEYBYTES:
            _fail("stream key has the wrong length")
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self.header: bytes = sodium.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, key
        )
        self._done = False

    def push(self, chunk: bytes, *, final: bool) -> bytes:
        if self._done:
            _fail("the stream is already finished")
        if len(chunk) > CHUNK:
            _fail("chunk larger than 64 KiB")
        self._done = final
        tag = _TAG_FINAL if final else _TAG_MESSAGE
        out: bytes = sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, chunk, None, tag
        )
        return out


class Decryptor:
    """Pull side of one stream; `finished` says whether the FINAL chunk was seen."""

    __slots__ = ("_state", "finished")

    def __init__(self, key: bytes, header: bytes) -> None:
        if len(key) != KEYBYTES or len(header) != HEADERBYTES:
            _fail("stream key or header has the wrong length")
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        try:
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)
        except (_NaclError, ValueError, TypeError) as exc:
            raise EnvelopeError("stream header rejected") from exc
        self.finished = False

    def pull(self, chunk: bytes) -> bytes:
        if self.finished:
            _fail("data after the FINAL chunk")
        if not ABYTES <= len(chunk) <= CIPHER_CHUNK:
            _fail("ciphertext chunk has an impossible length")
        try:
            plain, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(self._state, chunk, None)
        except (_NaclError, ValueError, TypeError) as exc:
            raise EnvelopeError("ciphertext chunk did not authenticate") from exc
        if tag == _TAG_FINAL:
            self.finished = True
        elif tag != _TAG_MESSAGE:
            _fail("unexpected stream tag")
        elif len(chunk) != CIPHER_CHUNK:
            # Only the last chunk may be short: a short non-final chunk means the
            # boundaries were moved, which the sender never does.
            _fail("short chunk before the end")
        return bytes(plain)


@dataclass(frozen=True, slots=True)
class Sealed:
    """What encrypting one file produced: the descriptor's secret and hash parts."""

    key: bytes
    header: bytes
    plain_size: int
    plain_sha256: bytes
    cipher_size: int
    cipher_sha256: bytes


def _read_full(read: Read, size: int) -> bytes:
    """Up to `size` bytes; short only at the end of the input."""
    parts: list[bytes] = []
    need = size
    while need > 0:
        part = read(need)
        if not part:
            break
        parts.append(part)
        need -= len(part)
    return b"".join(parts)


def encrypt_file(read: Read, write: Write, *, key: bytes | None = None) -> Sealed:
    """Encrypt everything `read` yields into `write`, 64 KiB at a time, hashing both
    sides on the way (the hub names a blob by the SHA-256 of its ciphertext)."""
    key = key or new_key()
    enc = Encryptor(key)
    plain_hash, cipher_hash = hashlib.sha256(), hashlib.sha256()
    plain_size = cipher_size = 0
    chunk = _read_full(read, CHUNK)
    while True:
        # Look one chunk ahead: the last chunk must carry FINAL, also when the file
        # size is an exact multiple of 64 KiB (no empty trailing chunk then).
        nxt = _read_full(read, CHUNK) if len(chunk) == CHUNK else b""
        final = not nxt
        out = enc.push(chunk, final=final)
        plain_hash.update(chunk)
        cipher_hash.update(out)
        plain_size += len(chunk)
        cipher_size += len(out)
        write(out)
        if final:
            break
        chunk = nxt
    return Sealed(
        key, enc.header, plain_size, plain_hash.digest(), cipher_size, cipher_hash.digest()
    )


def decrypt_file(read: Read, write: Write, *, key: bytes, header: bytes) -> tuple[int, bytes]:
    """Decrypt a whole stream from `read` into `write`; returns (plain size, SHA-256 of
    the plaintext). Raises EnvelopeError if any chunk fails, if the stream ends
    without its FINAL chunk (truncation), or if anything follows it."""
    dec = Decryptor(key, header)
    digest = hashlib.sha256()
    size = 0
    while not dec.finished:
        chunk = _read_full(read, CIPHER_CHUNK)
        if not chunk:
            _fail("the stream ended without its FINAL chunk")
        plain = dec.pull(chunk)
        digest.update(plain)
        size += len(plain)
        write(plain)
    if read(1):
        _fail("data after the FINAL chunk")
    return size, digest.digest()
