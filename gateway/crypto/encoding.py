"""Byte encodings of the wire protocol (PROTOCOL preamble): b64u, b64 and SHA-256.

Owns the one strict decoder of every base64 form the protocol uses. Decoders accept
exactly one spelling per byte string (no padding in b64u, padding required in b64, no
whitespace, no stray characters, no non-zero trailing bits), so that two different
strings can never stand for the same signed bytes. Must not do I/O or know anything
about keys, envelopes or HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

__all__ = ["b64_decode", "b64_encode", "b64u_decode", "b64u_encode", "sha256"]

# Explicit ASCII ranges: `\w` would also match non-ASCII letters and `$` a final "\n".
_B64U_CHARS = re.compile(r"[A-Za-z0-9_-]*")
_B64U_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Of the last character of a b64u string of length 4n+2 (4n+3), the low 4 (2) of its
# 6 bits carry no data (RFC 4648 §3.5).
_UNUSED_BITS = (0, 0, 0x0F, 0x03)
_B64_CHARS = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def b64u_encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Strictly decode unpadded base64url; raise ValueError on any other spelling."""
    if not isinstance(text, str) or _B64U_CHARS.fullmatch(text) is None:
        raise ValueError("not unpadded base64url")
    rest = len(text) % 4
    if rest == 1:
        raise ValueError("impossible base64url length")
    # Non-zero unused bits decode to the same bytes as the canonical string; refusing
    # them makes the string<->bytes mapping one-to-one (malleability). Checked on the
    # last character, not by encoding the bytes again: this runs on every envelope.
    if rest and _B64U_ALPHABET.index(text[-1]) & _UNUSED_BITS[rest]:
        raise ValueError("non-canonical base64url")
    # The characters and the length are valid, so this decodes without error.
    return base64.urlsafe_b64decode(text + "=" * (-rest % 4))


def b64_encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4)."""
    return base64.b64encode(data).decode("ascii")


def b64_decode(text: str) -> bytes:
    """Strictly decode padded standard base64; raise ValueError on any other spelling."""
    if not isinstance(text, str) or _B64_CHARS.fullmatch(text) is None:
        raise ValueError("not padded base64")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError("not padded base64") from exc
    # Same one-spelling rule as b64u: rejects missing or extra padding and set trailing bits.
    if b64_encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


def sha256(data: bytes) -> bytes:
    """SHA-256 digest (32 bytes)."""
    return hashlib.sha256(data).digest()
