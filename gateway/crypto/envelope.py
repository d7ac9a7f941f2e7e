"""End-to-end envelopes (PROTOCOL §4): HPKE to the recipient, signed twice by the sender.

Owns the envelope wire form, sealing, the outer check the hub makes on every envelope
(`verify_outer`: structure plus the outer signature, without decrypting) and opening
at the recipient (`open_envelope`: decrypt plus the inner, non-repudiable signature).
Every failure is one `EnvelopeError` whose `reason` is for the log only. Must not look
keys up, decide who may send what to whom, or check ids against a request or an
inbox (callers compare the returned header fields), and must not log bodies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from gateway.crypto.canonical import canonical_json
from gateway.crypto.encoding import b64u_decode, b64u_encode, sha256
from gateway.crypto.keys import ORG_ID_RE, OrgKeys, kid_of, verify_ed25519
from gateway.errors import EnvelopeError

__all__ = [
    "HEADER_FIELDS",
    "KINDS",
    "SUITE",
    "envelope_header",
    "hpke_info",
    "open_envelope",
    "outer_signature",
    "payload_hash",
    "seal",
    "signed_payload_hash",
    "verify_outer",
]

SUITE = "hpke-base-x25519-sha256-chacha20poly1305"
KINDS = frozenset({"dat-request", "dat-answer", "wat-request", "wat-answer", "message", "referral"})
# In wire order (PROTOCOL §4); canonical JSON sorts them anyway when hashing.
HEADER_FIELDS: tuple[str, ...] = (
    "v",
    "suite",
    "kind",
    "exchange_id",
    "case_ref",
    "subject_ref",
    "sender",
    "sender_kid",
    "recipient",
    "recipient_kid",
    "created_ms",
)
_BODY_FIELDS = ("enc", "ct", "sig")
_WIRE_FIELDS = frozenset((*HEADER_FIELDS, *_BODY_FIELDS))
_STR_FIELDS = tuple(f for f in HEADER_FIELDS if f not in ("v", "created_ms"))
# The inner signature covers what the hub could try to relabel once it is decrypted.
_INNER_FIELDS = ("case_ref", "exchange_id", "kind", "recipient", "sender", "subject_ref")
_INFO_PREFIX = b"zvh-gateway/v1/envelope\x00"
_KID_RE = re.compile(r"[0-9a-f]{32}")
_ENC_LEN = 32
_TAG_LEN = 16
_SIG_LEN = 64
_HPKE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)


_HEADER_HASH_LEN = 32  # SHA-256 of the canonical header, first in what is signed


@dataclass(frozen=True, slots=True)
class _Outer:
    """An envelope's parts, decoded (by `_check_outer`: its outer signature verified)."""

    header: dict[str, Any]
    header_hash: bytes
    enc: bytes
    ct: bytes

    def signed(self) -> bytes:
        """What the outer signature covers (PROTOCOL §4)."""
        return self.header_hash + self.enc + self.ct


def _fail(reason: str) -> NoReturn:
    raise EnvelopeError(reason)


def envelope_header(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope without enc, ct and sig: what HPKE info and the outer sig bind."""
    return {k: v for k, v in envelope.items() if k not in _BODY_FIELDS}


def hpke_info(header: Mapping[str, Any]) -> bytes:
    """HPKE info = "zvh-gateway/v1/envelope" || 0x00 || SHA-256(canonical header)."""
    return _INFO_PREFIX + sha256(canonical_json(header))


def _inner_message(header: Mapping[str, Any], body: Mapping[str, Any]) -> bytes:
    signed: dict[str, Any] = {f: header[f] for f in _INNER_FIELDS}
    signed["body"] = body
    return canonical_json(signed)


def _seal_raw(
    sender: OrgKeys, header: dict[str, Any], plaintext: bytes, recipient_key: bytes
) -> dict[str, Any]:
    """Encrypt `plaintext` under `header` and sign the result (seal's last step; tests use it)."""
    header_hash = sha256(canonical_json(header))
    public = X25519PublicKey.from_public_bytes(recipient_key)
    sealed = _HPKE.encrypt(plaintext, public, _INFO_PREFIX + header_hash)
    enc, ct = sealed[:_ENC_LEN], sealed[_ENC_LEN:]
    sig = sender.sign(header_hash + enc + ct)
    return {**header, "enc": b64u_encode(enc), "ct": b64u_encode(ct), "sig": b64u_encode(sig)}


def seal(
    *,
    sender: OrgKeys,
    recipient: str,
    recipient_encryption_key: bytes,
    kind: str,
    exchange_id: str,
    case_ref: str,
    subject_ref: str,
    body: Mapping[str, Any],
    created_ms: int,
) -> dict[str, Any]:
    """Build a wire envelope from `sender` to `recipient` (PROTOCOL §4). ValueError on bad input."""
    if kind not in KINDS:
        raise ValueError(f"unknown envelope kind {kind!r}")
    if ORG_ID_RE.fullmatch(recipient) is None:
        raise ValueError("recipient is not an organisation id")
    if not isinstance(body, Mapping):
        raise ValueError("body must be a JSON object")
    if isinstance(created_ms, bool) or not isinstance(created_ms, int) or created_ms < 0:
        raise ValueError("created_ms is a non-negative integer")
    for name, value in (
        ("exchange_id", exchange_id),
        ("case_ref", case_ref),
        ("subject_ref", subject_ref),
    ):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
    header: dict[str, Any] = {
        "v": 1,
        "suite": SUITE,
        "kind": kind,
        "exchange_id": exchange_id,
        "case_ref": case_ref,
        "subject_ref": subject_ref,
        "sender": sender.org,
        "sender_kid": sender.signing_kid,
        "recipient": recipient,
        "recipient_kid": kid_of(recipient_encryption_key),
        "created_ms": created_ms,
    }
    inner_sig = sender.sign(_inner_message(header, body))
    plaintext = canonical_json({"body": body, "sig": b64u_encode(inner_sig)})
    return _seal_raw(sender, header, plaintext, recipient_encryption_key)


def _decode(envelope: Mapping[str, Any], field: str) -> bytes:
    value = envelope[field]
    if not isinstance(value, str):
        _fail(f"{field} is not a string")
    try:
        return b64u_decode(value)
    except ValueError:
        _fail(f"{field} is not b64u")


def _outer_parts(envelope: Mapping[str, Any], sender_signing_key: bytes) -> tuple[_Outer, bytes]:
    """Everything `_check_outer` checks but the signature; returns it with the sig."""
    if not isinstance(envelope, Mapping):
        _fail("envelope is not an object")
    if len(envelope) != len(_WIRE_FIELDS) or set(envelope) != _WIRE_FIELDS:
        _fail("envelope fields differ")
    header = {f: envelope[f] for f in HEADER_FIELDS}
    v, created_ms = header["v"], header["created_ms"]
    # bool is an int in Python and would canonicalise as true/false: exclude it.
    if type(v) is not int or v != 1:
        _fail("unsupported envelope version")
    if type(created_ms) is not int or created_ms < 0:
        _fail("created_ms is not a non-negative integer")
    for field in _STR_FIELDS:
        if type(header[field]) is not str:
            _fail(f"{field} is not a string")
    if header["suite"] != SUITE:
        _fail("unsupported suite")
    if header["kind"] not in KINDS:
        _fail("unknown kind")
    if (
        ORG_ID_RE.fullmatch(header["sender"]) is None
        or ORG_ID_RE.fullmatch(header["recipient"]) is None
    ):
        _fail("sender or recipient is not an organisation id")
    if _KID_RE.fullmatch(header["recipient_kid"]) is None:
        _fail("recipient_kid is not a kid")
    if len(sender_signing_key) != 32 or header["sender_kid"] != kid_of(sender_signing_key):
        # The header names the key it claims to be signed with; a different key
        # verifying it would mean the caller looked up the wrong key.
        _fail("sender_kid does not match the sender key")
    enc, ct, sig = (_decode(envelope, f) for f in _BODY_FIELDS)
    if len(enc) != _ENC_LEN or len(ct) < _TAG_LEN or len(sig) != _SIG_LEN:
        _fail("enc, ct or sig has the wrong length")
    try:
        header_hash = sha256(canonical_json(header))
    except ValueError:
        _fail("header is not canonicalisable")
    return _Outer(header=header, header_hash=header_hash, enc=enc, ct=ct), sig


def _check_outer(envelope: Mapping[str, Any], sender_signing_key: bytes) -> _Outer:
    outer, sig = _outer_parts(envelope, sender_signing_key)
    if not verify_ed25519(sender_signing_key, sig, outer.signed()):
        _fail("outer signature invalid")
    return outer


def verify_outer(envelope: Mapping[str, Any], sender_signing_key: bytes) -> None:
    """Structure and outer signature, without decrypting (what the hub checks)."""
    _check_outer(envelope, sender_signing_key)


def outer_signature(
    envelope: Mapping[str, Any], sender_signing_key: bytes
) -> tuple[bytes, bytes, bytes]:
    """Every check of `verify_outer` but the signature itself: returns (key, sig,
    message) for the caller to verify (the hub does so in its verifier process).
    Raises EnvelopeError."""
    outer, sig = _outer_parts(envelope, sender_signing_key)
    return sender_signing_key, sig, outer.signed()


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _parse_plaintext(plaintext: bytes) -> tuple[dict[str, Any], str]:
    try:
        data = json.loads(
            plaintext.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
        # Only the exact canonical bytes are accepted, so there is one plaintext
        # per (body, sig) and nothing a lenient parser could read differently.
        if canonical_json(data) != plaintext:
            raise ValueError("plaintext is not canonical JSON")
    except (ValueError, RecursionError):
        _fail("plaintext is not canonical JSON")
    if not isinstance(data, dict) or set(data) != {"body", "sig"}:
        _fail("plaintext fields differ")
    body, sig = data["body"], data["sig"]
    if not isinstance(body, dict) or not isinstance(sig, str):
        _fail("plaintext fields have the wrong types")
    return body, sig


def open_envelope(
    envelope: Mapping[str, Any], *, recipient: OrgKeys, sender_signing_key: bytes
) -> dict[str, Any]:
    """Verify, decrypt and check the inner signature; return the body."""
    outer = _check_outer(envelope, sender_signing_key)
    if outer.header["recipient"] != recipient.org:
        _fail("not addressed to this recipient")
    if outer.header["recipient_kid"] != recipient.encryption_kid:
        _fail("sealed to another encryption key")
    try:
        plaintext = _HPKE.decrypt(
            outer.enc + outer.ct,
            recipient._encryption_private,  # package-internal: keys never leave crypto/
            _INFO_PREFIX + outer.header_hash,
        )
    except Exception:  # InvalidTag or ValueError: all one opaque failure
        _fail("decryption failed")
    body, sig = _parse_plaintext(plaintext)
    try:
        inner_sig = b64u_decode(sig)
        message = _inner_message(outer.header, body)
    except ValueError:
        _fail("inner signature malformed")
    if not verify_ed25519(sender_signing_key, inner_sig, message):
        _fail("inner signature invalid")
    return body


def signed_payload_hash(signed: bytes) -> bytes:
    """`payload_hash` of the envelope whose outer signature covers `signed` (the
    message `outer_signature` returns: header hash || enc || ct), without decoding the
    envelope a second time."""
    return sha256(signed[_HEADER_HASH_LEN:])


def payload_hash(envelope: Mapping[str, Any]) -> bytes:
    """SHA-256(enc || ct) of the decoded bytes: what the ledger records."""
    if not isinstance(envelope, Mapping) or "enc" not in envelope or "ct" not in envelope:
        _fail("envelope has no enc or ct")
    return sha256(_decode(envelope, "enc") + _decode(envelope, "ct"))
