"""Signed tree heads in the C2SP signed-note checkpoint format (PROTOCOL §5).

Owns the checkpoint's byte form (origin, size, base64 root, one `time <ms>` extension
line), its Ed25519 signature line and the strict parser and verifier auditors run.
A checkpoint is what binds a tree size to a root: proofs are only meaningful against
a (size, root) pair taken together from one verified checkpoint.

Must not: read the clock (the signing time is a field of the checkpoint the caller
builds), hold private key material itself (signing goes through `OrgKeys`), or accept
a note in any spelling other than the one it would itself produce.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from gateway.crypto.encoding import b64_decode, b64_encode
from gateway.crypto.keys import OrgKeys, verify_ed25519
from gateway.ledger.merkle import HASH_SIZE

__all__ = [
    "Checkpoint",
    "key_hash",
    "origin_for",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
]

_EM_DASH = "\u2014"
_KEY_HASH_BYTES = 4
_ED25519_KEY_BYTES = 32
_ED25519_SIG_BYTES = 64
# Ed25519 signature type byte of the C2SP signed-note key hash.
_ALG_ED25519 = b"\x01"
# signed-note caps signatures per note; it also bounds the work a hostile note can cause.
_MAX_SIGNATURES = 100
# Decimal with no sign, no leading zeros and ASCII digits only (str.isdigit would
# accept other scripts' digits); 19 digits keeps every value below 2^63.
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


def origin_for(hub_org: str) -> str:
    """The log origin of a hub: `<hub-org-id>.zvh-gateway/v1`."""
    return f"{hub_org}.zvh-gateway/v1"


def key_hash(origin: str, public_key: bytes) -> bytes:
    """First 4 bytes of SHA-256(origin || 0x0A || 0x01 || Ed25519 public key)."""
    return hashlib.sha256(origin.encode() + b"\n" + _ALG_ED25519 + public_key).digest()[
        :_KEY_HASH_BYTES
    ]


def _check_name(name: str) -> None:
    # signed-note key names (here: the origin) appear space-separated on the
    # signature line, so whitespace or "+" would make the line ambiguous.
    if not isinstance(name, str) or not name:
        raise ValueError("origin must be a non-empty string")
    if any(c.isspace() or c == "+" or not c.isprintable() for c in name):
        raise ValueError("origin must not contain spaces, '+' or control characters")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{name} must be an integer in [0, 2^63)")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: `size` leaves with root `root`, signed at `time_ms`."""

    origin: str
    size: int
    root: bytes
    time_ms: int

    def __post_init__(self) -> None:
        _check_name(self.origin)
        _check_count("size", self.size)
        _check_count("time_ms", self.time_ms)
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise ValueError(f"root must be {HASH_SIZE} bytes")

    def note_text(self) -> bytes:
        """The signed text: the four body lines, each ending in a newline."""
        return (
            f"{self.origin}\n{self.size}\n{b64_encode(self.root)}\ntime {self.time_ms}\n"
        ).encode()


def sign_checkpoint(keys: OrgKeys, checkpoint: Checkpoint) -> str:
    """The full signed note: note text, an empty line, then one signature line."""
    # A hub signs only its own log; signing another origin would let one key vouch
    # for a log it does not keep.
    if checkpoint.origin != origin_for(keys.org):
        raise ValueError("a hub signs checkpoints for its own origin only")
    text = checkpoint.note_text()
    blob = key_hash(checkpoint.origin, keys.signing_key) + keys.sign(text)
    return f"{text.decode()}\n{_EM_DASH} {checkpoint.origin} {b64_encode(blob)}\n"


def _parse_decimal(name: str, text: str) -> int:
    if _DECIMAL.fullmatch(text) is None:
        raise ValueError(f"{name} is not a canonical decimal")
    return int(text)


def _parse_signature_line(line: str) -> tuple[str, bytes]:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != _EM_DASH:
        raise ValueError("malformed signature line")
    name, encoded = parts[1], parts[2]
    _check_name(name)
    blob = b64_decode(encoded)
    if len(blob) <= _KEY_HASH_BYTES:
        raise ValueError("signature too short")
    return name, blob


def parse_checkpoint(text: str) -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """Parse a signed note strictly; return the checkpoint and its signatures.

    Each signature is (key name, 4-byte key hash || signature bytes). Nothing is
    verified here beyond the format; use `verify_checkpoint`.
    """
    if not isinstance(text, str):
        raise ValueError("checkpoint must be text")
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError("checkpoint is not valid UTF-8 text") from exc
    # "\r", tabs and the like would let two renderings of a note differ invisibly.
    if any(c != "\n" and not c.isprintable() for c in text):
        raise ValueError("checkpoint contains control characters")
    body, blank, signatures = text.partition("\n\n")
    if not blank:
        raise ValueError("checkpoint has no empty line before its signatures")
    lines = body.split("\n")
    if len(lines) != 4:
        raise ValueError("checkpoint body must have exactly four lines")
    origin, size_text, root_text, extension = lines
    if not extension.startswith("time "):
        raise ValueError("checkpoint extension line must be 'time <ms>'")
    checkpoint = Checkpoint(
        origin=origin,
        size=_parse_decimal("size", size_text),
        root=b64_decode(root_text),
        time_ms=_parse_decimal("time", extension[len("time ") :]),
    )
    # The signature covers these exact bytes; insisting that they are our own
    # spelling means one checkpoint has exactly one signable text.
    if checkpoint.note_text() != (body + "\n").encode():
        raise ValueError("checkpoint body is not in canonical form")
    if not signatures.endswith("\n"):
        raise ValueError("checkpoint must end with a newline")
    sig_lines = signatures[:-1].split("\n")
    if len(sig_lines) > _MAX_SIGNATURES:
        raise ValueError("too many signatures")
    return checkpoint, [_parse_signature_line(line) for line in sig_lines]


def verify_checkpoint(text: str, origin: str, public_key: bytes) -> Checkpoint:
    """The checkpoint in `text` if it is for `origin` and signed by `public_key`.

    Raises ValueError with the reason otherwise; callers that face a partner should
    log the reason and report one opaque failure.
    """
    if not isinstance(public_key, bytes) or len(public_key) != _ED25519_KEY_BYTES:
        raise ValueError("public key must be 32 raw Ed25519 bytes")
    checkpoint, signatures = parse_checkpoint(text)
    if checkpoint.origin != origin:
        raise ValueError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    expected = key_hash(origin, public_key)
    ours = [
        blob[_KEY_HASH_BYTES:]
        for name, blob in signatures
        if name == origin and blob[:_KEY_HASH_BYTES] == expected
    ]
    if not ours:
        raise ValueError("no signature by the expected key")
    if len(ours) > 1:
        raise ValueError("duplicate signatures by the expected key")
    signature = ours[0]
    if len(signature) != _ED25519_SIG_BYTES or not verify_ed25519(
        public_key, signature, checkpoint.note_text()
    ):
        raise ValueError("checkpoint signature does not verify")
    return checkpoint


def chain_link(
    origin: str, previous: tuple[int, bytes] | None, checkpoint: Checkpoint
) -> dict[str, object]:
    """The record a hub signs when it stores a checkpoint: which stored checkpoint came
    before it. A verifier that follows these links notices a deleted stored row."""
    return {
        "origin": origin,
        "prev_size": None if previous is None else previous[0],
        "prev_root": None if previous is None else previous[1].hex(),
        "size": checkpoint.size,
        "root": checkpoint.root.hex(),
        "time_ms": checkpoint.time_ms,
    }
