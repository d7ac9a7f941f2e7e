from __future__ import annotations

import copy
import ctypes
import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto.encoding import b64u_decode, b64u_encode
from gateway.crypto.keys import (
    OrgKeys,
    PublicKeys,
    kid_of,
    sign_record,
    verify_ed25519,
    verify_record,
)
from gateway.errors import ConfigError
from tests.vectors import load_v1

VECTOR_KEYS: dict[str, dict[str, str]] = load_v1()["keys"]


def _vector_keys(org: str) -> OrgKeys:
    entry = VECTOR_KEYS[org]
    return OrgKeys.from_private(
        org,
        b64u_decode(entry["signing_private_key"]),
        b64u_decode(entry["encryption_private_key"]),
    )


@pytest.mark.parametrize("org", sorted(VECTOR_KEYS))
def test_vector_keys_give_the_listed_public_keys_and_kids(org: str) -> None:
    entry = VECTOR_KEYS[org]
    keys = _vector_keys(org)
    assert b64u_encode(keys.signing_key) == entry["signing_key"]
    assert b64u_encode(keys.encryption_key) == entry["encryption_key"]
    assert keys.signing_kid == entry["signing_kid"] == kid_of(keys.signing_key)
    assert keys.encryption_kid == entry["encryption_kid"]
    assert keys.public().to_json() == {
        "org": org,
        "signing_key": entry["signing_key"],
        "signing_kid": entry["signing_kid"],
        "encryption_key": entry["encryption_key"],
        "encryption_kid": entry["encryption_kid"],
    }
    assert keys.private_json() == {
        "org": org,
        "signing_private_key": entry["signing_private_key"],
        "encryption_private_key": entry["encryption_private_key"],
    }


def test_public_keys_json_round_trip_and_kid_check() -> None:
    public = OrgKeys.generate("org-a").public()
    data: dict[str, Any] = {**public.to_json(), "role": "partner"}  # extra members ignored
    assert PublicKeys.from_json(data) == public
    data["signing_kid"] = "0" * 32
    with pytest.raises(ValueError):
        PublicKeys.from_json(data)


@pytest.mark.parametrize(
    "data",
    [
        {"org": "org-a", "signing_key": b64u_encode(b"x" * 31), "encryption_key": "A" * 43},
        {"org": "org-a", "signing_key": "A" * 43, "encryption_key": b64u_encode(b"x" * 33)},
        {"org": "org-a", "signing_key": "A" * 43 + "=", "encryption_key": "A" * 43},
        {"org": "Org/A", "signing_key": "A" * 43, "encryption_key": "A" * 43},
        {"org": "org-a", "signing_key": 1, "encryption_key": "A" * 43},
        {"org": "org-a", "signing_key": "A" * 43},
        ["not", "a", "mapping"],
    ],
)
def test_public_keys_from_json_rejects_bad_input(data: Any) -> None:
    with pytest.raises(ValueError):
        PublicKeys.from_json(data)


def test_repr_and_pickle_never_show_private_keys() -> None:
    keys = _vector_keys("politie-rotterdam")
    text = repr(keys) + str(keys)
    for secret in keys.private_json().values():
        if secret != keys.org:
            assert secret not in text
    assert keys.signing_kid in text
    with pytest.raises(TypeError):
        pickle.dumps(keys)
    assert copy.copy(keys) is keys
    assert copy.deepcopy({"k": keys})["k"] is keys


def test_sign_and_verify_ed25519() -> None:
    keys = OrgKeys.generate("org-a")
    sig = keys.sign(b"message")
    assert len(sig) == 64
    assert verify_ed25519(keys.signing_key, sig, b"message")
    assert not verify_ed25519(keys.signing_key, sig, b"messagE")
    assert not verify_ed25519(keys.signing_key, sig[:-1] + bytes([sig[-1] ^ 1]), b"message")
    assert not verify_ed25519(OrgKeys.generate("org-b").signing_key, sig, b"message")


@pytest.mark.parametrize(
    ("public", "signature"),
    [(b"", b"\x00" * 64), (b"\x00" * 31, b"\x00" * 64), (b"\x00" * 32, b""), (b"\x00" * 33, b"")],
)
def test_verify_ed25519_never_raises(public: bytes, signature: bytes) -> None:
    assert verify_ed25519(public, signature, b"m") is False


def test_verify_ed25519_accepts_bytes_like() -> None:
    keys = OrgKeys.generate("org-a")
    sig = keys.sign(b"m")
    assert verify_ed25519(bytearray(keys.signing_key), memoryview(sig), b"m")  # type: ignore[arg-type]


def test_verify_ed25519_rejects_non_bytes() -> None:
    assert verify_ed25519(b"\x01" * 32, 64, b"m") is False  # type: ignore[arg-type]
    assert verify_ed25519("k" * 32, b"\x00" * 64, b"m") is False  # type: ignore[arg-type]
    assert verify_ed25519(b"\x01" * 32, None, b"m") is False  # type: ignore[arg-type]


def test_sign_record_ignores_its_own_sig_field() -> None:
    keys = OrgKeys.generate("org-a")
    record: dict[str, Any] = {"b": [1, 2], "a": "x"}
    sig = sign_record(keys, record)
    record["sig"] = sig
    assert verify_record(keys.signing_key, record, sig)
    assert not verify_record(keys.signing_key, {**record, "a": "y"}, sig)
    assert not verify_record(keys.signing_key, record, sig + "A")
    assert not verify_record(keys.signing_key, {"x": 1.5}, sig)
    assert not verify_record(keys.signing_key, record, None)  # type: ignore[arg-type]


def test_from_private_rejects_wrong_lengths_and_org() -> None:
    with pytest.raises(ValueError):
        OrgKeys.from_private("org-a", b"\x01" * 31, b"\x02" * 32)
    with pytest.raises(ValueError):
        OrgKeys.generate("Not An Org")


# -- key files ----------------------------------------------------------------------------


def test_save_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    keys = _vector_keys("veilig-thuis-rr")
    path = tmp_path / "keys.json"
    keys.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == keys.private_json()
    loaded = OrgKeys.load(path)
    assert loaded.public() == keys.public()
    assert loaded.private_json() == keys.private_json()
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temp file left


def test_save_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        OrgKeys.generate("org-a").save(tmp_path / "k.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first, second = OrgKeys.generate("org-a"), OrgKeys.generate("org-a")
    first.save(str(path))
    with pytest.raises(ConfigError, match="exists"):
        second.save(path)
    assert OrgKeys.load(path).public() == first.public()
    second.save(path, overwrite=True)
    assert OrgKeys.load(path).public() == second.public()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_save_into_missing_directory_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot write"):
        OrgKeys.generate("org-a").save(tmp_path / "missing" / "keys.json")


_GOOD = {
    "org": "politie-rotterdam",
    "signing_private_key": VECTOR_KEYS["politie-rotterdam"]["signing_private_key"],
    "encryption_private_key": VECTOR_KEYS["politie-rotterdam"]["encryption_private_key"],
}


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json " + _GOOD["signing_private_key"].encode(),
        b"\xff\xfe",
        json.dumps([_GOOD]).encode(),
        json.dumps({k: v for k, v in _GOOD.items() if k != "org"}).encode(),
        json.dumps({**_GOOD, "extra": 1}).encode(),
        json.dumps({**_GOOD, "org": "Bad Org"}).encode(),
        json.dumps({**_GOOD, "signing_private_key": _GOOD["signing_private_key"] + "="}).encode(),
        json.dumps({**_GOOD, "signing_private_key": _GOOD["signing_private_key"][:-2]}).encode(),
        json.dumps({**_GOOD, "encryption_private_key": 5}).encode(),
    ],
)
def test_bad_key_file_is_config_error_without_key_material(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        OrgKeys.load(path)
    message = str(info.value)
    assert str(path) in message
    for secret in (_GOOD["signing_private_key"], _GOOD["encryption_private_key"]):
        assert secret[:8] not in message
    # The original exception is dropped so a traceback cannot carry key material either.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_missing_key_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        OrgKeys.load(tmp_path / "nope.json")


# RFC 8032 §7.1, TEST 1-3: (public key, message, signature), hex.
RFC8032_VECTORS = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("public", "message", "signature"), RFC8032_VECTORS)
def test_verify_ed25519_rfc8032_vectors(public: str, message: str, signature: str) -> None:
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert verify_ed25519(pk, sig, msg)
    assert not verify_ed25519(pk, sig, msg + b"\x00")
    assert not verify_ed25519(pk, bytes([sig[0] ^ 1]) + sig[1:], msg)


def test_verify_ed25519_refuses_a_small_order_key() -> None:
    # The identity point (order 1) with the identity R and S = 0 "verifies" any message
    # under a lax check; libsodium refuses small-order keys and R values.
    identity = bytes([1]) + bytes(31)
    assert not verify_ed25519(identity, identity + bytes(32), b"any message")


def test_verify_ed25519_keeps_the_gil() -> None:
    # Why it is bound through ctypes.PyDLL (gateway/crypto/keys.py, _SODIUM): releasing
    # the GIL for ~40 us let the database thread take it from the hub's event loop.
    from gateway.crypto import keys as keys_module

    assert isinstance(keys_module._SODIUM, ctypes.PyDLL)
    assert keys_module._verify_detached._flags_ & ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]
