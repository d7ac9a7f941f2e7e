"""Signed-note checkpoints: the strict parser and verifier reject every malformed note."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.crypto.encoding import b64_encode, b64u_decode
from gateway.crypto.keys import OrgKeys
from gateway.ledger.checkpoint import (
    Checkpoint,
    key_hash,
    origin_for,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from gateway.ledger.merkle import EMPTY_ROOT
from tests.vectors import load_v1

HUB = "zvh-rotterdam-hub"
ORIGIN = origin_for(HUB)
DASH = "\u2014"


def _keys(org: str) -> OrgKeys:
    raw = load_v1()["keys"][org]
    return OrgKeys.from_private(
        org, b64u_decode(raw["signing_private_key"]), b64u_decode(raw["encryption_private_key"])
    )


HUB_KEYS = _keys(HUB)
OTHER_KEYS = _keys("politie-rotterdam")
ROOT = hashlib.sha256(b"root").digest()
CHECKPOINT = Checkpoint(ORIGIN, 5, ROOT, 1795000000456)
NOTE = sign_checkpoint(HUB_KEYS, CHECKPOINT)
BODY, SIGNATURE_LINE = NOTE.split("\n\n")


def _reject(text: str, origin: str = ORIGIN, key: bytes = HUB_KEYS.signing_key) -> None:
    with pytest.raises(ValueError):
        verify_checkpoint(text, origin, key)


def test_origin_and_key_hash() -> None:
    assert ORIGIN == "zvh-rotterdam-hub.zvh-gateway/v1"
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + HUB_KEYS.signing_key).digest()[:4]
    assert key_hash(ORIGIN, HUB_KEYS.signing_key) == expected


def test_note_layout() -> None:
    assert CHECKPOINT.note_text() == (
        f"{ORIGIN}\n5\n{b64_encode(ROOT)}\ntime 1795000000456\n".encode()
    )
    assert NOTE.startswith(CHECKPOINT.note_text().decode() + "\n" + DASH + " " + ORIGIN + " ")
    assert NOTE.endswith("\n")
    assert NOTE.count("\n") == 6


def test_round_trip() -> None:
    assert verify_checkpoint(NOTE, ORIGIN, HUB_KEYS.signing_key) == CHECKPOINT
    parsed, signatures = parse_checkpoint(NOTE)
    assert parsed == CHECKPOINT
    ((name, blob),) = signatures
    assert name == ORIGIN
    assert blob[:4] == key_hash(ORIGIN, HUB_KEYS.signing_key)
    assert len(blob) == 68


def test_size_zero_checkpoint_before_the_first_append() -> None:
    empty = Checkpoint(ORIGIN, 0, EMPTY_ROOT, 1)
    note = sign_checkpoint(HUB_KEYS, empty)
    assert note.split("\n")[1:3] == ["0", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]
    assert verify_checkpoint(note, ORIGIN, HUB_KEYS.signing_key) == empty


@given(
    st.integers(min_value=0, max_value=2**63 - 1),
    st.binary(min_size=32, max_size=32),
    st.integers(min_value=0, max_value=2**63 - 1),
)
def test_any_checkpoint_round_trips(size: int, root: bytes, time_ms: int) -> None:
    checkpoint = Checkpoint(ORIGIN, size, root, time_ms)
    note = sign_checkpoint(HUB_KEYS, checkpoint)
    assert verify_checkpoint(note, ORIGIN, HUB_KEYS.signing_key) == checkpoint


def test_a_hub_signs_only_its_own_origin() -> None:
    with pytest.raises(ValueError):
        sign_checkpoint(OTHER_KEYS, CHECKPOINT)


@pytest.mark.parametrize(
    ("origin", "size", "root", "time_ms"),
    [
        ("", 0, ROOT, 0),
        ("a b", 0, ROOT, 0),
        ("a+b", 0, ROOT, 0),
        ("a\tb", 0, ROOT, 0),
        (ORIGIN, -1, ROOT, 0),
        (ORIGIN, True, ROOT, 0),
        (ORIGIN, 2**63, ROOT, 0),
        (ORIGIN, 0, ROOT[:31], 0),
        (ORIGIN, 0, ROOT, -1),
    ],
)
def test_checkpoint_rejects_bad_fields(origin: str, size: int, root: bytes, time_ms: int) -> None:
    with pytest.raises(ValueError):
        Checkpoint(origin, size, root, time_ms)


@pytest.mark.parametrize("size", ["05", "-5", "+5", "5a", "", " 5", "5 ", "\u0665", "1e1"])
def test_rejects_bad_size(size: str) -> None:
    lines = NOTE.split("\n")
    lines[1] = size
    _reject("\n".join(lines))


@pytest.mark.parametrize(
    "note",
    [
        BODY + "\n" + SIGNATURE_LINE,  # missing blank line
        BODY + "\n\n\n" + SIGNATURE_LINE,  # two blank lines
        BODY + "\n\n",  # no signature
        NOTE[:-1],  # no final newline
        NOTE + "\n",  # trailing empty line
        NOTE.replace("\n", "\r\n"),
        NOTE.replace(DASH, "-"),
        NOTE.replace(DASH + " ", DASH + "  "),
        NOTE.replace("time ", "time  "),
        NOTE.replace("time ", "Time "),
        NOTE.replace("time 1795000000456", "time 01795000000456"),
        NOTE.replace("time 1795000000456\n", ""),  # three body lines
        NOTE.replace("time 1795000000456\n", "time 1795000000456\nx\n"),  # five
        NOTE.replace(b64_encode(ROOT), b64_encode(ROOT).rstrip("=")),
        NOTE.replace(b64_encode(ROOT), b64_encode(ROOT[:31])),
        NOTE.replace(b64_encode(ROOT), b64_encode(ROOT).replace("+", "-").replace("/", "_")),
        "",
        "\n\n",
    ],
)
def test_rejects_malformed_notes(note: str) -> None:
    assert note != NOTE
    _reject(note)


def test_rejects_wrong_origin() -> None:
    _reject(NOTE, origin=origin_for("politie-rotterdam"))
    other = Checkpoint(origin_for("politie-rotterdam"), 5, ROOT, 1)
    _reject(sign_checkpoint(OTHER_KEYS, other), key=OTHER_KEYS.signing_key)


def test_rejects_wrong_key() -> None:
    _reject(NOTE, key=OTHER_KEYS.signing_key)
    _reject(NOTE, key=HUB_KEYS.signing_key[:31])


def test_rejects_bad_signature() -> None:
    blob = key_hash(ORIGIN, HUB_KEYS.signing_key) + bytes(64)
    _reject(f"{BODY}\n\n{DASH} {ORIGIN} {b64_encode(blob)}\n")
    # A valid signature over another checkpoint's text.
    other = sign_checkpoint(HUB_KEYS, Checkpoint(ORIGIN, 6, ROOT, 1795000000456))
    _reject(BODY + "\n\n" + other.split("\n\n")[1])
    # The right key hash with a truncated signature.
    short = key_hash(ORIGIN, HUB_KEYS.signing_key) + bytes(63)
    _reject(f"{BODY}\n\n{DASH} {ORIGIN} {b64_encode(short)}\n")


def test_foreign_signatures_are_ignored_but_duplicates_are_not() -> None:
    foreign = f"{DASH} witness.example {b64_encode(bytes(4 + 64))}\n"
    assert verify_checkpoint(NOTE + foreign, ORIGIN, HUB_KEYS.signing_key) == CHECKPOINT
    assert (
        verify_checkpoint(f"{BODY}\n\n{foreign}{SIGNATURE_LINE}", ORIGIN, HUB_KEYS.signing_key)
        == CHECKPOINT
    )
    _reject(NOTE + SIGNATURE_LINE)
    _reject(NOTE + foreign * 100)


def test_a_flipped_bit_anywhere_is_rejected() -> None:
    raw = NOTE.encode()
    for position in range(len(raw)):
        for bit in range(8):
            _assert_rejected(
                raw[:position] + bytes([raw[position] ^ (1 << bit)]) + raw[position + 1 :]
            )


@given(st.data())
def test_a_replaced_byte_anywhere_is_rejected(data: st.DataObject) -> None:
    raw = NOTE.encode()
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    new = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != raw[position]))
    _assert_rejected(raw[:position] + bytes([new]) + raw[position + 1 :])


def _assert_rejected(mutated: bytes) -> None:
    try:
        text = mutated.decode("utf-8")
    except UnicodeDecodeError:
        return  # not even text: the HTTP layer cannot hand it to the verifier as a str
    _reject(text)
