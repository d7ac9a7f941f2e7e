from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.encoding import b64u_decode
from gateway.crypto.oprf import (
    blind,
    blind_evaluate,
    derive_key_pair,
    evaluate,
    expand_message_xmd,
    finalize,
    generate_key_pair,
    is_valid_bsn,
    pid_input,
)
from gateway.errors import CryptoError
from tests.vectors import load_v1

# RFC 9497 Appendix A.1.1, OPRF(ristretto255, SHA-512), mode 0 (modeOPRF).
RFC_SEED = bytes.fromhex("a3" * 32)
RFC_KEY_INFO = bytes.fromhex("74657374206b6579")  # "test key"
RFC_SKSM = bytes.fromhex("5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e")
RFC_BLIND = bytes.fromhex("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706")
RFC_VECTORS = [
    (
        "00",
        "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
        "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
        "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
    ),
    (
        "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
        "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
        "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4"
        "f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
    ),
]


def test_rfc9497_derive_key_pair() -> None:
    sk, pk = derive_key_pair(RFC_SEED, RFC_KEY_INFO)
    assert sk == RFC_SKSM
    assert len(pk) == 32


@pytest.mark.parametrize(("input_hex", "blinded_hex", "evaluated_hex", "output_hex"), RFC_VECTORS)
def test_rfc9497_a11_vectors(
    input_hex: str, blinded_hex: str, evaluated_hex: str, output_hex: str
) -> None:
    input_ = bytes.fromhex(input_hex)
    r, blinded = blind(input_, RFC_BLIND)
    assert r == RFC_BLIND
    assert blinded.hex() == blinded_hex
    evaluated = blind_evaluate(RFC_SKSM, blinded)
    assert evaluated.hex() == evaluated_hex
    assert finalize(input_, r, evaluated).hex() == output_hex
    assert evaluate(RFC_SKSM, input_).hex() == output_hex


def test_project_vector() -> None:
    vector = load_v1()["oprf"]
    sk, _ = derive_key_pair(RFC_SEED, b"test key")
    input_ = pid_input("230857103", "19800203")
    assert input_ == vector["input_utf8"].encode()
    r, blinded = blind(input_, bytes.fromhex(vector["blind_hex"]))
    assert blinded == b64u_decode(vector["blinded_b64u"])
    evaluated = blind_evaluate(sk, blinded)
    assert evaluated == b64u_decode(vector["evaluated_b64u"])
    assert finalize(input_, r, evaluated).hex() == vector["pid"]
    assert evaluate(sk, input_).hex() == vector["pid"]


@settings(max_examples=25)
@given(st.binary(max_size=100))
def test_blind_protocol_equals_direct_evaluation(input_: bytes) -> None:
    sk, _ = generate_key_pair()
    r, blinded = blind(input_)
    assert finalize(input_, r, blind_evaluate(sk, blinded)) == evaluate(sk, input_)


def test_blinds_hide_the_input() -> None:
    _, first = blind(b"same input")
    _, second = blind(b"same input")
    assert first != second


def test_keys_differ() -> None:
    assert generate_key_pair() != generate_key_pair()
    assert derive_key_pair(RFC_SEED, b"other")[0] != RFC_SKSM


ORDER = 2**252 + 27742317777372353535851937790883648493


@pytest.mark.parametrize(
    "element",
    [
        bytes(32),  # identity
        b"\xff" * 32,  # not a canonical encoding
        bytes([1]) + bytes(31),  # odd: not a valid encoding
        bytes(31),
        b"",
    ],
)
def test_blind_evaluate_rejects_bad_elements(element: bytes) -> None:
    with pytest.raises(CryptoError):
        blind_evaluate(RFC_SKSM, element)
    with pytest.raises(CryptoError):
        finalize(b"x", RFC_BLIND, element)


@pytest.mark.parametrize(
    "scalar",
    [bytes(32), ORDER.to_bytes(32, "little"), b"\xff" * 32, bytes(31)],
)
def test_bad_scalars_are_rejected(scalar: bytes) -> None:
    _, blinded = blind(b"x")
    with pytest.raises(CryptoError):
        blind_evaluate(scalar, blinded)
    with pytest.raises(CryptoError):
        blind(b"x", scalar)
    with pytest.raises(CryptoError):
        evaluate(scalar, b"x")


def test_derive_key_pair_input_checks() -> None:
    with pytest.raises(ValueError):
        derive_key_pair(b"short", b"")
    with pytest.raises(ValueError):
        derive_key_pair(RFC_SEED, b"x" * 65536)


# RFC 9380 Appendix K.3, expand_message_xmd(SHA-512).
XMD_DST = b"QUUX-V01-CS02-with-expander-SHA512-256"
XMD_VECTORS = [
    (b"", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"),
    (b"abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"),
    (
        b"abcdef0123456789",
        0x20,
        "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58",
    ),
    (
        b"",
        0x80,
        "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921"
        "b052b62eaed99b46f72f2ef4cc96bfaf254ebbbec091e1a3b9e4fb5e5b619d2e"
        "0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7e"
        "b00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961",
    ),
]


@pytest.mark.parametrize(("msg", "length", "expected"), XMD_VECTORS)
def test_rfc9380_expand_message_xmd_sha512(msg: bytes, length: int, expected: str) -> None:
    assert expand_message_xmd(msg, XMD_DST, length).hex() == expected


def test_expand_message_xmd_limits() -> None:
    assert len(expand_message_xmd(b"abc", b"DST", 200)) == 200
    with pytest.raises(ValueError):
        expand_message_xmd(b"", b"D" * 256, 64)
    with pytest.raises(ValueError):
        expand_message_xmd(b"", b"DST", 64 * 256)


# -- the pid input ------------------------------------------------------------------------


@pytest.mark.parametrize("bsn", ["230857103", "111222333", "123456782"])
def test_valid_bsns(bsn: str) -> None:
    assert is_valid_bsn(bsn)


@pytest.mark.parametrize(
    "bsn",
    [
        "230857104",  # fails the 11-test
        "123456789",
        "000000000",  # passes the arithmetic, but is no one's number
        "23085710",
        "2308571030",
        "23085710a",
        " 230857103",
        "２３０８５７１０３",  # full-width digits
        "٢٣٠٨٥٧١٠٣",  # Arabic-Indic digits
    ],
)
def test_invalid_bsns(bsn: str) -> None:
    assert not is_valid_bsn(bsn)
    with pytest.raises(ValueError, match="11-test"):
        pid_input(bsn, "19800203")


@pytest.mark.parametrize("date", ["19800200", "19800000", "20260229"])
def test_dates_with_unknown_parts(date: str) -> None:
    assert pid_input("230857103", date) == f"zvh-bkc-v1|230857103|{date}".encode()


@pytest.mark.parametrize("date", ["1980-02-03", "1980023", "198002031", "", "19800203\n"])
def test_bad_dates(date: str) -> None:
    with pytest.raises(ValueError, match="YYYYMMDD"):
        pid_input("230857103", date)
