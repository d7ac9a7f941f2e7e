"""Pseudonyms (PROTOCOL §6): RFC 9497 OPRF, ristretto255-SHA512, mode 0 (modeOPRF).

Owns the OPRF protocol steps (DeriveKeyPair, Blind, BlindEvaluate, Finalize, Evaluate),
expand_message_xmd (RFC 9380 §5.3.1) and the pid input format with its BSN 11-test.
Group arithmetic is libsodium's, through pysodium. Must not keep keys or blinds
anywhere (callers hold them), must not log inputs (they contain BSNs), and must not
know how blinded elements travel.
"""

from __future__ import annotations

import hashlib
import re

import pysodium

from gateway.errors import CryptoError

__all__ = [
    "blind",
    "blind_evaluate",
    "derive_key_pair",
    "evaluate",
    "expand_message_xmd",
    "finalize",
    "generate_key_pair",
    "is_valid_bsn",
    "is_valid_element",
    "pid_input",
]

# RFC 9497 §3.1 and §4.1: contextString = "OPRFV1-" || I2OSP(mode, 1) || "-" || identifier.
_CONTEXT = b"OPRFV1-\x00-ristretto255-SHA512"
_DST_HASH_TO_GROUP = b"HashToGroup-" + _CONTEXT
_DST_HASH_TO_SCALAR = b"HashToScalar-" + _CONTEXT
_DST_DERIVE_KEY_PAIR = b"DeriveKeyPair" + _CONTEXT

_ELEMENT_LEN = 32
_SCALAR_LEN = 32
_UNIFORM_LEN = 64
_IDENTITY = bytes(_ELEMENT_LEN)
# Order of the ristretto255 group (RFC 9496 §4).
_ORDER = 2**252 + 27742317777372353535851937790883648493

_BSN_RE = re.compile(r"[0-9]{9}")
_DATE_RE = re.compile(r"[0-9]{8}")


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 with SHA-512 (b_in_bytes = 64, s_in_bytes = 128)."""
    ell = -(-length // 64)
    if ell > 255 or length > 65535 or len(dst) > 255:
        raise ValueError("expand_message_xmd parameters out of range")
    dst_prime = dst + _i2osp(len(dst), 1)
    msg_prime = bytes(128) + msg + _i2osp(length, 2) + b"\x00" + dst_prime
    b_0 = hashlib.sha512(msg_prime).digest()
    b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    out = b_i
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b_0, b_i, strict=True))
        b_i = hashlib.sha512(mixed + _i2osp(i, 1) + dst_prime).digest()
        out += b_i
    return out[:length]


# -- typed wrappers around libsodium (pysodium raises ValueError on a -1 return) ------


def _scalar_reduce(wide: bytes) -> bytes:
    return bytes(pysodium.crypto_core_ristretto255_scalar_reduce(wide))


def _from_hash(uniform: bytes) -> bytes:
    return bytes(pysodium.crypto_core_ristretto255_from_hash(uniform))


def _mult(scalar: bytes, element: bytes) -> bytes:
    # libsodium refuses (-1) a non-canonical encoding and an identity result.
    try:
        return bytes(pysodium.crypto_scalarmult_ristretto255(scalar, element))
    except ValueError:
        raise CryptoError("invalid or identity group element") from None


def _mult_base(scalar: bytes) -> bytes:
    return bytes(pysodium.crypto_scalarmult_ristretto255_base(scalar))


def _invert(scalar: bytes) -> bytes:
    return bytes(pysodium.crypto_core_ristretto255_scalar_invert(scalar))


def _random_scalar() -> bytes:
    # libsodium draws uniformly from [1, L-1]: never zero.
    return bytes(pysodium.crypto_core_ristretto255_scalar_random())


# -- RFC 9497 building blocks ---------------------------------------------------------


def _hash_to_group(data: bytes) -> bytes:
    return _from_hash(expand_message_xmd(data, _DST_HASH_TO_GROUP, _UNIFORM_LEN))


def _hash_to_scalar(data: bytes, dst: bytes = _DST_HASH_TO_SCALAR) -> bytes:
    # 64 uniform bytes read little-endian and reduced mod L (RFC 9497 §4.1).
    return _scalar_reduce(expand_message_xmd(data, dst, _UNIFORM_LEN))


def _check_scalar(scalar: bytes, what: str) -> bytes:
    """DeserializeScalar: 32 bytes, canonical (< L), and not zero (it must be invertible)."""
    if not isinstance(scalar, bytes) or len(scalar) != _SCALAR_LEN:
        raise CryptoError(f"{what} is not a 32-byte scalar")
    if not 0 < int.from_bytes(scalar, "little") < _ORDER:
        raise CryptoError(f"{what} is not a canonical non-zero scalar")
    return scalar


def _check_element(element: bytes, what: str) -> bytes:
    """DeserializeElement: a valid ristretto255 encoding that is not the identity.

    A client sending the identity (or a bogus encoding) learns nothing about the key,
    but RFC 9497 §2.1 requires the check and it keeps errors uniform.
    """
    if not isinstance(element, bytes) or len(element) != _ELEMENT_LEN or element == _IDENTITY:
        raise CryptoError(f"{what} is not a group element")
    if not pysodium.crypto_core_ristretto255_is_valid_point(element):
        raise CryptoError(f"{what} is not a group element")
    return element


def _finalize_hash(input_: bytes, element: bytes) -> bytes:
    return hashlib.sha512(
        _i2osp(len(input_), 2) + input_ + _i2osp(len(element), 2) + element + b"Finalize"
    ).digest()


def _input_element(input_: bytes) -> bytes:
    if len(input_) > 65535:
        raise ValueError("OPRF input longer than 65535 bytes")
    element = _hash_to_group(input_)
    if element == _IDENTITY:  # probability ~2^-252; RFC 9497 says InvalidInputError
        raise CryptoError("input hashes to the identity")
    return element


# -- API ------------------------------------------------------------------------------


def derive_key_pair(seed: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9497 §3.2.1 DeriveKeyPair: (skS scalar, pkS element) from a 32-byte seed."""
    if len(seed) != _SCALAR_LEN:
        raise ValueError("seed must be 32 bytes")
    if len(info) > 65535:
        raise ValueError("info longer than 65535 bytes")
    derive_input = bytes(seed) + _i2osp(len(info), 2) + bytes(info)
    for counter in range(256):
        sk = _hash_to_scalar(derive_input + _i2osp(counter, 1), _DST_DERIVE_KEY_PAIR)
        if sk != bytes(_SCALAR_LEN):
            return sk, _mult_base(sk)
    raise CryptoError("DeriveKeyPairError")  # pragma: no cover - probability ~2^-2000


def generate_key_pair() -> tuple[bytes, bytes]:
    """A random (skS, pkS)."""
    sk = _random_scalar()
    return sk, _mult_base(sk)


def blind(input_: bytes, blind_scalar: bytes | None = None) -> tuple[bytes, bytes]:
    """RFC 9497 Blind: (blind, blindedElement). Pass `blind_scalar` only in tests."""
    r = _random_scalar() if blind_scalar is None else _check_scalar(blind_scalar, "blind")
    return r, _mult(r, _input_element(input_))


def blind_evaluate(sk: bytes, blinded_element: bytes) -> bytes:
    """RFC 9497 BlindEvaluate (server side): skS * blindedElement."""
    return _mult(_check_scalar(sk, "key"), _check_element(blinded_element, "blinded element"))


def finalize(input_: bytes, blind_scalar: bytes, evaluated_element: bytes) -> bytes:
    """RFC 9497 Finalize (client side): the 64-byte PRF output."""
    inverse = _invert(_check_scalar(blind_scalar, "blind"))
    element = _mult(inverse, _check_element(evaluated_element, "evaluated element"))
    return _finalize_hash(input_, element)


def evaluate(sk: bytes, input_: bytes) -> bytes:
    """RFC 9497 Evaluate: the same 64-byte output, computed with the key directly."""
    element = _mult(_check_scalar(sk, "key"), _input_element(input_))
    return _finalize_hash(input_, element)


def is_valid_element(element: bytes) -> bool:
    """Whether `element` deserialises as a non-identity ristretto255 element (RFC 9497
    §2.1): what a hub checks before it forwards a partner's blinded element."""
    try:
        _check_element(element, "element")
    except CryptoError:
        return False
    return True


def is_valid_bsn(bsn: str) -> bool:
    """Nine ASCII digits passing the 11-test: sum(d_i * (9..2)) - d_9 divisible by 11."""
    if not isinstance(bsn, str) or _BSN_RE.fullmatch(bsn) is None:
        return False
    digits = [int(c) for c in bsn]
    total = sum(d * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True)) - digits[8]
    # 000000000 passes the arithmetic but is not a number anyone holds.
    return total % 11 == 0 and any(digits)


def pid_input(bsn: str, birth_date_yyyymmdd: str) -> bytes:
    """OPRF input x = UTF-8 "zvh-bkc-v1|<BSN>|<YYYYMMDD>" (PROTOCOL §6)."""
    if not is_valid_bsn(bsn):
        raise ValueError("BSN must be 9 digits passing the 11-test")
    if not isinstance(birth_date_yyyymmdd, str) or _DATE_RE.fullmatch(birth_date_yyyymmdd) is None:
        raise ValueError("birth date must be 8 digits YYYYMMDD (00 for an unknown month or day)")
    return f"zvh-bkc-v1|{bsn}|{birth_date_yyyymmdd}".encode()
