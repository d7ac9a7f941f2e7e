from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.canonical import canonical_json
from gateway.crypto.encoding import b64u_decode, b64u_encode, sha256
from gateway.crypto.envelope import (
    HEADER_FIELDS,
    KINDS,
    SUITE,
    _seal_raw,
    envelope_header,
    hpke_info,
    open_envelope,
    outer_signature,
    payload_hash,
    seal,
    signed_payload_hash,
    verify_outer,
)
from gateway.crypto.keys import OrgKeys
from gateway.errors import EnvelopeError
from tests.vectors import load_v1

V1 = load_v1()
VECTOR = V1["envelope"]


def _vector_keys(org: str) -> OrgKeys:
    entry = V1["keys"][org]
    return OrgKeys.from_private(
        org,
        b64u_decode(entry["signing_private_key"]),
        b64u_decode(entry["encryption_private_key"]),
    )


SENDER = _vector_keys("politie-rotterdam")
RECIPIENT = _vector_keys("veilig-thuis-rr")
HUB = _vector_keys("zvh-rotterdam-hub")
BODY: dict[str, Any] = {"question": "Is S1 known?", "categories": ["zorg"], "n": 3, "x": None}


def _seal(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "sender": SENDER,
        "recipient": RECIPIENT.org,
        "recipient_encryption_key": RECIPIENT.encryption_key,
        "kind": "dat-request",
        "exchange_id": "7f3c2a9e-4b1d-4c6a-9e0f-2d5b8a1c3e7f",
        "case_ref": "ZVH-2026-0042",
        "subject_ref": "S1",
        "body": BODY,
        "created_ms": 1_795_000_000_123,
        **overrides,
    }
    return seal(**arguments)


def _open(envelope: dict[str, Any], recipient: OrgKeys = RECIPIENT) -> dict[str, Any]:
    return open_envelope(envelope, recipient=recipient, sender_signing_key=SENDER.signing_key)


def _reason(envelope: Any, *, recipient: OrgKeys = RECIPIENT, key: bytes | None = None) -> str:
    with pytest.raises(EnvelopeError) as info:
        open_envelope(envelope, recipient=recipient, sender_signing_key=key or SENDER.signing_key)
    return info.value.reason


ENVELOPE = _seal()


# -- the vector -------------------------------------------------------------------------


def test_vector_header_hash_and_info() -> None:
    header = envelope_header(VECTOR["envelope"])
    assert set(header) == set(HEADER_FIELDS)
    canonical = canonical_json(header)
    assert canonical == VECTOR["header_canonical_utf8"].encode()
    assert sha256(canonical).hex() == VECTOR["header_sha256_hex"]
    assert hpke_info(header) == b64u_decode(VECTOR["hpke_info_b64u"])


def test_vector_opens() -> None:
    assert VECTOR["sender"] == SENDER.org
    assert VECTOR["recipient"] == RECIPIENT.org
    verify_outer(VECTOR["envelope"], SENDER.signing_key)
    assert _open(VECTOR["envelope"]) == VECTOR["opens_to_body"]


def test_vector_payload_hash() -> None:
    envelope = VECTOR["envelope"]
    expected = sha256(b64u_decode(envelope["enc"]) + b64u_decode(envelope["ct"]))
    assert payload_hash(envelope) == expected
    # The same, from what the outer signature covers (the hub's path).
    _, _, signed = outer_signature(envelope, SENDER.signing_key)
    assert signed_payload_hash(signed) == expected


@given(st.dictionaries(st.text(max_size=5), st.integers(-(2**53) + 1, 2**53 - 1), max_size=4))
@settings(max_examples=25)
def test_payload_hash_from_the_signed_bytes_matches_any_fresh_envelope(
    body: dict[str, Any],
) -> None:
    envelope = _seal(body=body)
    _, _, signed = outer_signature(envelope, SENDER.signing_key)
    assert signed_payload_hash(signed) == payload_hash(envelope)


# -- seal -------------------------------------------------------------------------------


def test_fresh_seal_round_trips_in_wire_order() -> None:
    assert list(ENVELOPE) == [*HEADER_FIELDS, "enc", "ct", "sig"]
    assert ENVELOPE["v"] == 1
    assert ENVELOPE["suite"] == SUITE
    assert ENVELOPE["sender_kid"] == SENDER.signing_kid
    assert ENVELOPE["recipient_kid"] == RECIPIENT.encryption_kid
    assert len(b64u_decode(ENVELOPE["enc"])) == 32
    verify_outer(ENVELOPE, SENDER.signing_key)
    assert _open(ENVELOPE) == BODY
    # JSON transport does not change anything.
    assert _open(json.loads(json.dumps(ENVELOPE))) == BODY


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_and_empty_refs(kind: str) -> None:
    envelope = _seal(kind=kind, case_ref="", subject_ref="", body={})
    assert _open(envelope) == {}


def test_seals_are_randomised() -> None:
    assert _seal()["enc"] != _seal()["enc"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "dat-reply"},
        {"body": {"score": 0.5}},
        {"body": ["not", "an", "object"]},
        {"created_ms": True},
        {"created_ms": 1.5},
        {"created_ms": -1},
        {"recipient": "Not An Org"},
        {"recipient_encryption_key": b"\x01" * 31},
        {"case_ref": None},
    ],
)
def test_seal_rejects_bad_input(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _seal(**overrides)


# -- verify_outer (the hub) -------------------------------------------------------------


def test_outer_rejects_another_sender_key() -> None:
    with pytest.raises(EnvelopeError):
        verify_outer(ENVELOPE, HUB.signing_key)
    with pytest.raises(EnvelopeError):
        verify_outer(ENVELOPE, b"\x00" * 31)


def test_outer_rejects_a_kid_that_does_not_name_the_key() -> None:
    # Same org, rotated signing key: the header names the old kid, so it must not verify
    # even if the signature were somehow valid under the new one.
    rotated = OrgKeys.generate(SENDER.org)
    envelope = _seal(sender=rotated)
    verify_outer(envelope, rotated.signing_key)
    with pytest.raises(EnvelopeError, match="sender_kid"):
        verify_outer({**envelope, "sender_kid": SENDER.signing_kid}, rotated.signing_key)


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"v": True},
        {"v": "1"},
        {"suite": "hpke-base-x25519-sha256-aes128gcm"},
        {"kind": "dat-reply"},
        {"created_ms": 1.795e12},
        {"created_ms": False},
        {"created_ms": -5},
        {"created_ms": "1795000000123"},
        {"exchange_id": 7},
        {"case_ref": None},
        {"sender": "Politie"},
        {"recipient_kid": "ABC"},
        {"enc": ENVELOPE["enc"] + "="},
        {"enc": b64u_encode(bytes(31))},
        {"ct": b64u_encode(bytes(15))},
        {"sig": b64u_encode(bytes(63))},
        {"sig": 5},
        {"extra": "field"},
    ],
)
def test_outer_structure(change: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError):
        verify_outer({**ENVELOPE, **change}, SENDER.signing_key)


@pytest.mark.parametrize("missing", [*HEADER_FIELDS, "enc", "ct", "sig"])
def test_outer_missing_field(missing: str) -> None:
    envelope = {k: v for k, v in ENVELOPE.items() if k != missing}
    with pytest.raises(EnvelopeError, match="fields differ"):
        verify_outer(envelope, SENDER.signing_key)


def test_outer_rejects_non_mapping() -> None:
    with pytest.raises(EnvelopeError):
        verify_outer([], SENDER.signing_key)  # type: ignore[arg-type]
    with pytest.raises(EnvelopeError):
        payload_hash({"enc": 1, "ct": ""})


# -- open_envelope (the recipient) ------------------------------------------------------


def test_open_refuses_another_recipient() -> None:
    assert _reason(ENVELOPE, recipient=HUB) == "not addressed to this recipient"


def test_open_refuses_after_key_rotation() -> None:
    rotated = OrgKeys.generate(RECIPIENT.org)
    assert _reason(ENVELOPE, recipient=rotated) == "sealed to another encryption key"


def test_header_is_bound_into_hpke_info() -> None:
    # Even with a valid outer signature over a changed header (a sender re-signing), the
    # ciphertext only opens under the header it was sealed with.
    header = {**envelope_header(ENVELOPE), "subject_ref": "S2"}
    enc, ct = b64u_decode(ENVELOPE["enc"]), b64u_decode(ENVELOPE["ct"])
    sig = SENDER.sign(sha256(canonical_json(header)) + enc + ct)
    relabelled = {**header, "enc": ENVELOPE["enc"], "ct": ENVELOPE["ct"], "sig": b64u_encode(sig)}
    verify_outer(relabelled, SENDER.signing_key)
    assert _reason(relabelled) == "decryption failed"


def _raw(plaintext: bytes) -> dict[str, Any]:
    header = envelope_header(_seal())
    return _seal_raw(SENDER, header, plaintext, RECIPIENT.encryption_key)


def _inner_sig(**fields: Any) -> str:
    signed = {
        "body": BODY,
        "case_ref": "ZVH-2026-0042",
        "exchange_id": "7f3c2a9e-4b1d-4c6a-9e0f-2d5b8a1c3e7f",
        "kind": "dat-request",
        "recipient": RECIPIENT.org,
        "sender": SENDER.org,
        "subject_ref": "S1",
        **fields,
    }
    return b64u_encode(SENDER.sign(canonical_json(signed)))


def test_raw_seal_with_correct_inner_signature_opens() -> None:
    assert _open(_raw(canonical_json({"body": BODY, "sig": _inner_sig()}))) == BODY


@pytest.mark.parametrize(
    "field",
    ["case_ref", "exchange_id", "kind", "recipient", "sender", "subject_ref", "body"],
)
def test_inner_signature_binds_every_field(field: str) -> None:
    other = {"kind": "wat-request", "recipient": "other-org", "sender": "other-org"}
    value: Any = {"other": 1} if field == "body" else other.get(field, "other")
    plaintext = canonical_json({"body": BODY, "sig": _inner_sig(**{field: value})})
    assert _reason(_raw(plaintext)) == "inner signature invalid"


def test_inner_signature_by_another_key() -> None:
    signed = canonical_json(
        {
            "body": BODY,
            "case_ref": "ZVH-2026-0042",
            "exchange_id": "7f3c2a9e-4b1d-4c6a-9e0f-2d5b8a1c3e7f",
            "kind": "dat-request",
            "recipient": RECIPIENT.org,
            "sender": SENDER.org,
            "subject_ref": "S1",
        }
    )
    sig = b64u_encode(HUB.sign(signed))
    plaintext = canonical_json({"body": BODY, "sig": sig})
    assert _reason(_raw(plaintext)) == "inner signature invalid"


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        (b'{"body": {}, "sig": "x"}', "plaintext is not canonical JSON"),
        (b'{"body":{},"body":{},"sig":"x"}', "plaintext is not canonical JSON"),
        (b'{"body":{"a":NaN},"sig":"x"}', "plaintext is not canonical JSON"),
        (b'{"body":{"a":1.5},"sig":"x"}', "plaintext is not canonical JSON"),
        (b"\xff", "plaintext is not canonical JSON"),
        (b"[]", "plaintext fields differ"),
        (b'{"body":{}}', "plaintext fields differ"),
        (b'{"body":{},"extra":1,"sig":"x"}', "plaintext fields differ"),
        (b'{"body":[],"sig":"x"}', "plaintext fields have the wrong types"),
        (b'{"body":{},"sig":1}', "plaintext fields have the wrong types"),
        (b'{"body":{},"sig":"x="}', "inner signature malformed"),
        (b'{"body":{},"sig":"AAAA"}', "inner signature invalid"),
    ],
)
def test_plaintext_must_be_exact(plaintext: bytes, reason: str) -> None:
    assert _reason(_raw(plaintext)) == reason


# -- any flipped byte is rejected -------------------------------------------------------

_ALL_FIELDS = (*HEADER_FIELDS, "enc", "ct", "sig")


def _flip(data: bytes, index: int, mask: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


@settings(max_examples=400)
@given(
    field=st.sampled_from(_ALL_FIELDS),
    decoded=st.booleans(),
    index=st.integers(min_value=0, max_value=10_000),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_byte_is_rejected(field: str, decoded: bool, index: int, mask: int) -> None:
    envelope = dict(ENVELOPE)
    if decoded and field in ("enc", "ct", "sig"):
        envelope[field] = b64u_encode(_flip(b64u_decode(envelope[field]), index, mask))
    else:
        # The field's canonical wire form (what sits in the JSON a hub receives).
        wire = _flip(canonical_json(envelope[field]), index, mask)
        try:
            envelope[field] = json.loads(wire.decode("utf-8"))
        except ValueError:
            return  # no longer JSON: the mutation cannot reach a verifier
    assert envelope != ENVELOPE
    with pytest.raises(EnvelopeError):
        verify_outer(envelope, SENDER.signing_key)
    with pytest.raises(EnvelopeError):
        _open(envelope)
