"""Canonical JSON (RFC 8785, JCS): the only byte form of JSON that is signed or hashed.

Owns the rule that signed JSON never holds a float (times are integer milliseconds), so
that no two implementations can disagree about a number's spelling. The `rfc8785`
package is the reference serialiser; the standard library's C encoder is used as a
fast path only where its output is byte-identical (see `canonical_json`). Must not
parse JSON, do I/O, or accept anything it cannot serialise exactly (non-str keys,
sets, bytes, floats, integers beyond 2**53 - 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from gateway.crypto.encoding import sha256

__all__ = ["canonical_json", "canonical_sha256"]

# RFC 8785 §3.2.2.3 / I-JSON: integers outside this range are not exact in a double.
_MAX_SAFE_INT = 2**53 - 1

_FAST = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


# `_FAST.encode` builds this C encoder again on every call (about 1 µs, and canonical
# JSON is on every signature check and ledger append); built once here with the same
# arguments, but without the circular-reference check: it only ever encodes a value
# that `_exact` or `_Walk` has walked, which a cycle would not have survived.
_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODER = (
    None
    if _MAKE_ENCODER is None
    else _MAKE_ENCODER(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
)


def _encode(value: Any) -> bytes:
    """What `_FAST.encode(value).encode("utf-8")` gives (UnicodeEncodeError included)."""
    if _C_ENCODER is None:  # pragma: no cover - CPython always has the C encoder
        return _FAST.encode(value).encode("utf-8")
    return "".join(_C_ENCODER(value, 0)).encode("utf-8")


class _Walk:
    """Validates a value and notes whether the fast path may serialise it."""

    __slots__ = ("ascii_keys",)

    def __init__(self) -> None:
        self.ascii_keys = True

    def plain(self, value: Any, path: str) -> Any:
        """`value` as dicts, lists and scalars; ValueError for anything unsignable."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                raise ValueError(f"integer at {path or '$'} beyond 2**53 - 1")
            return int(value)  # int(): an IntEnum would otherwise print its name
        if isinstance(value, float):
            raise ValueError(f"float at {path or '$'}: the protocol never signs floats")
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ValueError(f"non-string key at {path or '$'}")
                self.ascii_keys = self.ascii_keys and key.isascii()
                out[key] = self.plain(item, f"{path}.{key}")
            return out
        if isinstance(value, list | tuple):
            return [self.plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
        raise ValueError(f"{type(value).__name__} at {path or '$'} is not JSON")


class _NotExact(Exception):
    """The value needs the careful walk (a subclass, a Mapping, a non-ASCII key...)."""


def _exact(value: Any) -> bool:
    """True when `value` is made only of the exact built-in types with ASCII keys, so
    the C encoder's output is the canonical one. Raises _NotExact otherwise (the walk
    then decides, and names any error precisely). No copy, no path strings: this is
    the hot path of every signature and ledger append."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return True
        raise _NotExact
    # Containers check their str members in place (most of the members there are):
    # a call per member was half of the time.
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                raise _NotExact
            if type(item) is not str:
                _exact(item)
        return True
    if kind is list or kind is tuple:
        for item in value:
            if type(item) is not str:
                _exact(item)
        return True
    raise _NotExact


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of `value`; ValueError for floats, non-str keys or non-JSON types.

    Without floats, JCS differs from `json.dumps(sort_keys=True, ensure_ascii=False,
    separators=(",", ":"))` only in key order: JCS sorts by UTF-16 code units, Python by
    code points, which agree whenever every key is ASCII (the protocol's keys are).
    String escaping is the same in both (only '"', '\\' and U+0000..U+001F, with the
    same short forms and lowercase \\u00xx). Any other value goes through `rfc8785`.
    A differential test holds the two paths to identical output.
    """
    try:
        if _exact(value):
            # Already plain dicts, lists and scalars with ASCII keys: encode as is.
            return _encode(value)
    except _NotExact:
        pass
    walk = _Walk()
    plain = walk.plain(value, "")
    if walk.ascii_keys:
        # A lone surrogate passes the encoder but fails here: UnicodeEncodeError is a
        # ValueError, as rfc8785 would raise.
        return _encode(plain)
    return rfc8785.dumps(plain)


def _reference_json(value: Any) -> bytes:
    """`canonical_json` through `rfc8785` only (for the differential test)."""
    return rfc8785.dumps(_Walk().plain(value, ""))


def canonical_sha256(value: Any) -> bytes:
    """SHA-256 of the canonical JSON of `value`."""
    return sha256(canonical_json(value))
