from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.encoding import b64_decode, b64_encode, b64u_decode, b64u_encode, sha256
from gateway.crypto.httpsig import (
    COVERED_NO_BODY,
    COVERED_WITH_BODY,
    VerifiedRequest,
    _base,
    _parse_dictionary,
    _parse_general,
    _serialize_params,
    _sign_base,
    _verify_base,
    content_digest,
    digest_matches,
    normalise_authority,
    sign_request,
    signature_base,
    verify_request,
)
from gateway.crypto.keys import OrgKeys
from gateway.errors import SignatureError
from tests.vectors import load_v1

V1 = load_v1()
VECTOR = V1["request_signature"]
SIGNER = V1["keys"]["politie-rotterdam"]
KEYS = OrgKeys.from_private(
    "politie-rotterdam",
    b64u_decode(SIGNER["signing_private_key"]),
    b64u_decode(SIGNER["encryption_private_key"]),
)
KEYID = f"politie-rotterdam/{KEYS.signing_kid}"
NOW = 1_795_000_000
AUTHORITY = "127.0.0.1:8080"
PATH = "/api/v1/dat-requests"
QUERY = "trace=%2Dx"
BODY = VECTOR["body_utf8"].encode()
CT = "application/json"
NONCE = "bm9uY2Utbm9uY2Utbm9uY2U"


def _resolve(org: str, kid: str) -> bytes | None:
    if (org, kid) == ("politie-rotterdam", KEYS.signing_kid):
        return KEYS.signing_key
    return None


def _request(**overrides: Any) -> dict[str, Any]:
    """A correctly signed POST with a body, as keyword arguments for verify_request."""
    headers = sign_request(
        keys=KEYS,
        method="POST",
        authority=AUTHORITY,
        path=PATH,
        query=QUERY,
        body=BODY,
        content_type=CT,
        created=NOW,
        nonce=b64u_decode(NONCE),
    )
    request: dict[str, Any] = {
        "method": "POST",
        "authority": AUTHORITY,
        "path": PATH,
        "query": QUERY,
        "body": BODY,
        "signature_input": headers["Signature-Input"],
        "signature": headers["Signature"],
        "content_digest": headers["Content-Digest"],
        "content_type": CT,
        "now_s": NOW,
        "resolve_key": _resolve,
    }
    request.update(overrides)
    return request


def _forged(params: str, *, label: str = "sig1", body: bytes = BODY, **overrides: Any) -> Any:
    """A request whose Signature-Input value is `params`, validly signed by KEYS.

    The signature covers exactly what the verifier would rebuild, so a rejection can
    only come from the check under test.
    """
    digest = content_digest(body) if body else None
    base = signature_base(
        method="POST",
        authority=AUTHORITY,
        path=PATH,
        query=QUERY,
        content_digest=digest,
        content_type=CT if body else None,
        signature_params=params,
    )
    sig = _sign_base(KEYS, base)
    return _request(
        body=body,
        signature_input=f"{label}={params}",
        signature=f"{label}=:{b64_encode(sig)}:",
        content_digest=digest,
        **overrides,
    )


Params = list[tuple[str, int | str]]


def _params(components: tuple[str, ...] = COVERED_WITH_BODY, params: Params | None = None) -> str:
    if params is None:
        params = _four()
    return _serialize_params(components, params)


def _four(
    created: int | str = NOW, nonce: int | str = NONCE, keyid: str = KEYID, alg: str = "ed25519"
) -> Params:
    """The four parameters in the order sign_request emits them, with replacements."""
    return [("created", created), ("nonce", nonce), ("keyid", keyid), ("alg", alg)]


def _rejects(request: dict[str, Any]) -> str:
    with pytest.raises(SignatureError) as info:
        verify_request(**request)
    return info.value.reason


# -- the vector and the RFC ---------------------------------------------------------------


def test_vector_signature_base_and_headers_byte_for_byte() -> None:
    params = VECTOR["headers"]["Signature-Input"].removeprefix("sig1=")
    base = signature_base(
        method="POST",
        authority=AUTHORITY,
        path=PATH,
        query=QUERY,
        content_digest=VECTOR["headers"]["Content-Digest"],
        content_type=CT,
        signature_params=params,
    )
    assert base == VECTOR["signature_base"].encode()
    assert VECTOR["url"] == f"http://{AUTHORITY}{PATH}?{QUERY}"
    assert VECTOR["created"] == NOW
    assert VECTOR["nonce"] == NONCE
    headers = sign_request(
        keys=KEYS,
        method=VECTOR["method"],
        authority=normalise_authority("127.0.0.1:8080"),
        path=PATH,
        query=QUERY,
        body=BODY,
        content_type=CT,
        created=VECTOR["created"],
        nonce=b64u_decode(VECTOR["nonce"]),
    )
    expected = {k: v for k, v in VECTOR["headers"].items() if k != "Content-Type"}
    assert headers == expected


def test_vector_verifies() -> None:
    request = _request(
        signature_input=VECTOR["headers"]["Signature-Input"],
        signature=VECTOR["headers"]["Signature"],
        content_digest=VECTOR["headers"]["Content-Digest"],
        content_type=VECTOR["headers"]["Content-Type"],
    )
    assert verify_request(**request) == VerifiedRequest(
        org="politie-rotterdam",
        kid=KEYS.signing_kid,
        keyid=KEYID,
        created=NOW,
        nonce=NONCE,
    )


# RFC 9421 Appendix B.1.4 (test-key-ed25519, as JWK d/x) and B.2.6.
RFC_SEED = b64u_decode("n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU")
RFC_PUBLIC = b64u_decode("JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs")
RFC_B26_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u"
    "02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
)
RFC_B26_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type"'
    ' "content-length");created=1618884473;keyid="test-key-ed25519"'
)


def test_rfc9421_b26_ed25519_example() -> None:
    keys = OrgKeys.from_private("rfc-test-key", RFC_SEED, b"\x07" * 32)
    assert keys.signing_key == RFC_PUBLIC
    components = ("date", "@method", "@path", "@authority", "content-type", "content-length")
    params = _serialize_params(components, [("created", 1618884473), ("keyid", "test-key-ed25519")])
    assert f"sig-b26={params}" == RFC_B26_INPUT
    (member,) = _parse_dictionary(RFC_B26_INPUT, inner_lists=True)
    assert (member.label, member.raw) == ("sig-b26", params)
    base = _base(
        [
            ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
            ("@method", "POST"),
            ("@path", "/foo"),
            ("@authority", normalise_authority("Example.com:80")),
            ("content-type", "application/json"),
            ("content-length", "18"),
        ],
        member.raw,
    )
    assert base == RFC_B26_BASE.encode()
    signature = _sign_base(keys, base)
    assert f"sig-b26=:{b64_encode(signature)}:" == RFC_B26_SIGNATURE
    (sig_member,) = _parse_dictionary(RFC_B26_SIGNATURE, inner_lists=False)
    assert sig_member.value == signature
    assert _verify_base(RFC_PUBLIC, base, signature)
    assert not _verify_base(RFC_PUBLIC, base.replace(b"/foo", b"/fo0"), signature)


# -- helpers ------------------------------------------------------------------------------


def test_content_digest() -> None:
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    assert content_digest(BODY) == VECTOR["headers"]["Content-Digest"]


@pytest.mark.parametrize(
    ("authority", "scheme", "expected"),
    [
        ("Example.COM", "http", "example.com"),
        ("example.com:80", "http", "example.com"),
        ("example.com:443", "https", "example.com"),
        ("example.com:443", "http", "example.com:443"),
        ("example.com:8080", "HTTPS", "example.com:8080"),
        ("example.com:", "http", "example.com"),
        ("127.0.0.1:8080", "http", "127.0.0.1:8080"),
        ("[::1]:443", "https", "[::1]"),
        ("[::1]:8443", "https", "[::1]:8443"),
    ],
)
def test_normalise_authority(authority: str, scheme: str, expected: str) -> None:
    assert normalise_authority(authority, scheme) == expected


@pytest.mark.parametrize(
    ("authority", "scheme"),
    [
        ("", "http"),
        ("user@example.com", "http"),
        ("example.com/path", "http"),
        ("example.com:http", "http"),
        ("example.com:99999", "http"),
        ("[::1", "http"),
        ("[::1]x", "http"),
        (":80", "http"),
        ("example.com", "ftp"),
        ("exa mple.com", "http"),
    ],
)
def test_normalise_authority_rejects(authority: str, scheme: str) -> None:
    with pytest.raises(ValueError):
        normalise_authority(authority, scheme)


def test_sign_request_without_body_covers_no_body_components() -> None:
    headers = sign_request(
        keys=KEYS,
        method="GET",
        authority=AUTHORITY,
        path="/api/v1/directory",
        query="",
        body=b"",
        content_type=None,
        created=NOW,
    )
    assert "Content-Digest" not in headers
    (member,) = _parse_dictionary(headers["Signature-Input"], inner_lists=True)
    assert member.raw.startswith('("@method" "@authority" "@path" "@query");created=')
    nonce = member.raw.split('nonce="')[1].split('"')[0]
    assert len(b64u_decode(nonce)) == 16
    verified = verify_request(
        **_request(
            method="GET",
            path="/api/v1/directory",
            query="",
            body=b"",
            signature_input=headers["Signature-Input"],
            signature=headers["Signature"],
            content_digest=None,
            content_type=None,
        )
    )
    assert verified.nonce == nonce


def test_fresh_nonces_differ() -> None:
    first = sign_request(
        keys=KEYS, method="GET", authority=AUTHORITY, path="/", query="", body=b"",
        content_type=None, created=NOW,
    )  # fmt: skip
    second = sign_request(
        keys=KEYS, method="GET", authority=AUTHORITY, path="/", query="", body=b"",
        content_type=None, created=NOW,
    )  # fmt: skip
    assert first["Signature-Input"] != second["Signature-Input"]


def test_empty_query_is_a_lone_question_mark() -> None:
    base = signature_base(
        method="GET",
        authority="h",
        path="",
        query="",
        content_digest=None,
        content_type=None,
        signature_params="()",
    )
    assert base == (
        b'"@method": GET\n"@authority": h\n"@path": /\n"@query": ?\n"@signature-params": ()'
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content_type": None},  # body without content type
        {"nonce": b"short"},
        {"label": "Sig1"},
        {"created": "1795000000"},
        {"path": "/a\r\nx"},
    ],
)
def test_sign_request_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "keys": KEYS,
        "method": "POST",
        "authority": AUTHORITY,
        "path": PATH,
        "query": "",
        "body": b"{}",
        "content_type": CT,
        "created": NOW,
        **kwargs,
    }
    with pytest.raises(ValueError):
        sign_request(**arguments)


def test_raw_percent_encoded_path_and_query() -> None:
    path, query = "/api/v1/cases/ZVH%2D2026%2D0042", "q=%2D1"
    headers = sign_request(
        keys=KEYS,
        method="GET",
        authority=AUTHORITY,
        path=path,
        query=query,
        body=b"",
        content_type=None,
        created=NOW,
    )
    common = _request(
        method="GET",
        path=path,
        query=query,
        body=b"",
        signature_input=headers["Signature-Input"],
        signature=headers["Signature"],
        content_digest=None,
        content_type=None,
    )
    assert verify_request(**common).org == "politie-rotterdam"
    assert _rejects({**common, "path": "/api/v1/cases/ZVH-2026-0042"}) == "signature invalid"
    assert _rejects({**common, "query": "q=-1"}) == "signature invalid"


def test_signer_parameter_order_is_kept() -> None:
    params = _params(params=_four()[::-1])
    assert verify_request(**_forged(params)).created == NOW


def test_repeated_fields_joined_by_the_web_layer_are_one_dictionary() -> None:
    request = _request()
    # A second signature by anyone (even a valid one) is refused, not ignored.
    other = _request()["signature_input"].replace("sig1=", "sig2=")
    other_sig = _request()["signature"].replace("sig1=", "sig2=")
    request["signature_input"] += ", " + other
    request["signature"] += ", " + other_sig
    assert _rejects(request) == "exactly one signature expected"


def test_whitespace_around_members_is_allowed() -> None:
    request = _request()
    request["signature_input"] = " " + request["signature_input"] + " \t"
    request["signature"] = "  " + request["signature"]
    assert verify_request(**request).org == "politie-rotterdam"


def test_max_skew_boundary() -> None:
    assert verify_request(**_request(now_s=NOW + 300)).created == NOW
    assert verify_request(**_request(now_s=NOW - 300)).created == NOW
    assert verify_request(**_request(now_s=NOW + 60, max_skew_s=60)).created == NOW


def test_resolve_key_gets_org_and_kid() -> None:
    seen: list[tuple[str, str]] = []

    def resolve(org: str, kid: str) -> bytes:
        seen.append((org, kid))
        return KEYS.signing_key

    verify_request(**_request(resolve_key=resolve))
    assert seen == [("politie-rotterdam", KEYS.signing_kid)]


# -- one test per 401 cause ---------------------------------------------------------------


def test_401_signature_input_missing() -> None:
    assert _rejects(_request(signature_input=None)) == "signature fields missing"


def test_401_signature_missing() -> None:
    assert _rejects(_request(signature=None)) == "signature fields missing"


def test_401_two_members_in_signature_input() -> None:
    request = _request()
    request["signature_input"] += ", sig2=" + _params()
    assert _rejects(request) == "exactly one signature expected"


def test_401_two_members_in_signature() -> None:
    request = _request()
    request["signature"] += ", sig2=:" + b64_encode(bytes(64)) + ":"
    assert _rejects(request) == "exactly one signature expected"


def test_401_same_label_twice() -> None:
    request = _request()
    request["signature_input"] += ", " + request["signature_input"]
    assert _rejects(request) == "exactly one signature expected"


def test_401_labels_differ() -> None:
    request = _request()
    request["signature"] = request["signature"].replace("sig1=", "sig2=")
    assert _rejects(request) == "signature labels differ"


def test_401_any_label_is_fine_when_both_match() -> None:
    assert verify_request(**_forged(_params(), label="x-zvh.1*")).org == "politie-rotterdam"


@pytest.mark.parametrize(
    "components",
    [
        COVERED_NO_BODY,  # a body, but digest and type not covered
        COVERED_WITH_BODY[:-1],
        (*COVERED_WITH_BODY, "content-length"),
        ("@authority", "@method", "@path", "@query", "content-digest", "content-type"),
        ("@method", "@authority", "@path", "@query", "content-type", "content-digest"),
        ("@method", "@authority", "@target-uri", "@query", "content-digest", "content-type"),
        (),
    ],
)
def test_401_covered_components_with_body(components: tuple[str, ...]) -> None:
    assert _rejects(_forged(_params(components))) == "covered components differ"


@pytest.mark.parametrize(
    "components",
    [COVERED_WITH_BODY, COVERED_NO_BODY[:-1], ("@method", "@path", "@authority", "@query")],
)
def test_401_covered_components_without_body(components: tuple[str, ...]) -> None:
    request = _forged(_params(components), body=b"", content_type=None)
    assert _rejects(request) == "covered components differ"


def test_401_component_parameters() -> None:
    params = _params().replace('"content-type"', '"content-type";sf')
    assert _rejects(_forged(params)) == "signature-input malformed"


BAD_PARAMS: list[Params] = [
    _four()[:3],  # no alg
    _four()[1:],  # no created
    [p for p in _four() if p[0] != "nonce"],
    [p for p in _four() if p[0] != "keyid"],
    [*_four(), ("expires", NOW + 60)],
    [*_four(), ("tag", "zvh")],
    [*_four(), ("nonce", NONCE)],  # duplicate
    [("created", NOW), *_four()[1:3], ("created", NOW)],  # duplicate instead of alg
]


@pytest.mark.parametrize("params", BAD_PARAMS)
def test_401_parameters_not_exactly_the_four(params: Params) -> None:
    assert _rejects(_forged(_params(params=params))) == "signature parameters differ"


@pytest.mark.parametrize("alg", ["rsa-pss-sha512", "ED25519", "hmac-sha256", ""])
def test_401_alg_not_ed25519(alg: str) -> None:
    assert _rejects(_forged(_params(params=_four(alg=alg)))) == "alg is not ed25519"


def test_401_created_not_an_integer() -> None:
    params = _params(params=_four(created=str(NOW)))
    assert _rejects(_forged(params)) == "created is not an integer"


def test_401_created_decimal_is_malformed() -> None:
    params = _params().replace(f"created={NOW}", f"created={NOW}.5")
    assert _rejects(_forged(params)) == "signature-input malformed"


@pytest.mark.parametrize("now_s", [NOW + 301, NOW - 301, NOW + 10**9, 0])
def test_401_created_outside_skew(now_s: int) -> None:
    assert _rejects(_request(now_s=now_s)) == "created outside the allowed clock skew"


@pytest.mark.parametrize(
    "nonce",
    [
        b64u_encode(b"x" * 15),  # too short
        NONCE + "=",  # padded
        "bm9uY2Utbm9uY2Utbm9uY2U/",  # not url-safe
        "",
    ],
)
def test_401_nonce_malformed(nonce: str) -> None:
    assert _rejects(_forged(_params(params=_four(nonce=nonce)))) == "nonce malformed"


def test_401_nonce_not_a_string() -> None:
    params = _params(params=_four(nonce=12345678901234))
    assert _rejects(_forged(params)) == "nonce malformed"


@pytest.mark.parametrize(
    "keyid",
    [
        KEYS.signing_kid,
        "politie-rotterdam",
        f"Politie-Rotterdam/{KEYS.signing_kid}",
        f"politie-rotterdam/{KEYS.signing_kid.upper()}",
        f"politie-rotterdam/{KEYS.signing_kid[:-1]}",
        f"politie-rotterdam/{KEYS.signing_kid}/x",
        f"/{KEYS.signing_kid}",
    ],
)
def test_401_keyid_malformed(keyid: str) -> None:
    assert _rejects(_forged(_params(params=_four(keyid=keyid)))) == "keyid malformed"


def test_401_unknown_key() -> None:
    other = OrgKeys.generate("politie-rotterdam")
    params = _params(params=_four(keyid=f"politie-rotterdam/{other.signing_kid}"))
    assert _rejects(_forged(params)) == "unknown key"
    assert _rejects(_request(resolve_key=lambda org, kid: None)) == "unknown key"


def test_401_content_digest_missing() -> None:
    assert _rejects(_request(content_digest=None)) == "content-digest missing"


@pytest.mark.parametrize(
    "digest",
    [
        "sha-256=:" + b64_encode(bytes(32)) + ":",  # wrong
        "sha-512=:" + b64_encode(bytes(64)) + ":",  # no sha-256
        content_digest(BODY) + ", " + content_digest(BODY),  # two sha-256
        content_digest(BODY).replace("=:", "=:x"),  # bad base64
        "sha-256=" + b64_encode(bytes(32)),  # not a byte sequence
        content_digest(BODY) + ";p=1",
        "",
    ],
)
def test_401_content_digest_malformed_or_wrong(digest: str) -> None:
    assert _rejects(_request(content_digest=digest)).startswith("content-digest")


def test_401_body_changed() -> None:
    assert _rejects(_request(body=BODY + b" ")) == "content-digest mismatch"


def test_content_digest_may_list_other_algorithms() -> None:
    digest = "sha-512=:" + b64_encode(bytes(64)) + ":, " + content_digest(BODY)
    params = _params()
    base = signature_base(
        method="POST",
        authority=AUTHORITY,
        path=PATH,
        query=QUERY,
        content_digest=digest,
        content_type=CT,
        signature_params=params,
    )
    request = _request(
        signature_input=f"sig1={params}",
        signature=f"sig1=:{b64_encode(_sign_base(KEYS, base))}:",
        content_digest=digest,
    )
    assert verify_request(**request).org == "politie-rotterdam"
    # The digest field is covered as sent: another spelling of it breaks the signature.
    request["content_digest"] = content_digest(BODY)
    assert _rejects(request) == "signature invalid"


def test_401_content_type_missing() -> None:
    assert _rejects(_request(content_type=None)) == "content-type missing"


def test_401_signature_not_64_bytes() -> None:
    request = _request(signature="sig1=:" + b64_encode(bytes(63)) + ":")
    assert _rejects(request) == "signature is not 64 bytes"


@pytest.mark.parametrize(
    "change",
    [
        {"method": "PUT"},
        {"authority": "127.0.0.1:8081"},
        {"path": PATH + "/"},
        {"query": ""},
        {"content_type": "application/json; charset=utf-8"},
        {"resolve_key": lambda org, kid: OrgKeys.generate("x-y").signing_key},
    ],
)
def test_401_signature_invalid(change: dict[str, Any]) -> None:
    assert _rejects(_request(**change)) == "signature invalid"


def test_401_signature_bit_flipped() -> None:
    request = _request()
    sig = b64_decode(request["signature"].removeprefix("sig1=:").removesuffix(":"))
    request["signature"] = f"sig1=:{b64_encode(sig[:10] + bytes([sig[10] ^ 1]) + sig[11:])}:"
    assert _rejects(request) == "signature invalid"


@pytest.mark.parametrize(
    ("signature_input", "signature"),
    [
        ("sig1=" + _params() + ",", None),  # trailing comma
        ("sig1", None),  # bare key
        ("Sig1=" + _params(), None),  # uppercase label
        ("sig1=" + _params().replace("(", "[", 1), None),
        ("sig1=" + _params().replace('" "', '""', 1), None),  # items need a space
        ("sig1=" + _params() + ";flag", None),  # boolean parameter
        ("sig1=" + _params() + ";x=?1", None),
        ("sig1=" + _params() + ";x=tok", None),  # token parameter
        ("sig1=" + _params().replace(f"created={NOW}", "created=1234567890123456"), None),
        ("sig1=:" + b64_encode(bytes(64)) + ":", None),  # byte sequence as input
        ("sig1=" + _params() + " x", None),
        ("sig1=" + _params() + "\n", None),
        (None, "sig1=" + _params()),  # inner list as signature
        (None, "sig1=:" + b64_encode(bytes(64)).rstrip("=") + ":"),  # unpadded
        (None, "sig1=:" + b64_encode(bytes(64)) + ":;alg=1"),
        (None, "sig1=:" + b64_encode(bytes(64)) + "::"),
        (None, ""),
    ],
)
def test_401_malformed_fields(signature_input: str | None, signature: str | None) -> None:
    request = _request()
    if signature_input is not None:
        request["signature_input"] = signature_input
    if signature is not None:
        request["signature"] = signature
    assert _rejects(request).endswith("malformed")


def test_sf_string_escapes_round_trip() -> None:
    params = _serialize_params(("a",), [("keyid", 'x"y\\z')])
    assert params == '("a");keyid="x\\"y\\\\z"'
    (member,) = _parse_dictionary("l=" + params, inner_lists=True)
    assert not isinstance(member.value, bytes)
    assert member.value.params == (("keyid", 'x"y\\z'),)


# -- streamed bodies (attachment blobs, PROTOCOL §4.1) -----------------------------------


def test_signing_a_digest_is_signing_the_bytes() -> None:
    common: dict[str, Any] = {
        "keys": KEYS,
        "method": "PUT",
        "authority": AUTHORITY,
        "path": "/api/v1/blobs",
        "query": "",
        "content_type": "application/octet-stream",
        "created": NOW,
        "nonce": b64u_decode(NONCE),
    }
    over_bytes = sign_request(body=BODY, **common)
    over_digest = sign_request(body=b"", body_sha256=sha256(BODY), **common)
    assert over_bytes == over_digest
    with pytest.raises(ValueError, match="not both"):
        sign_request(body=BODY, body_sha256=sha256(BODY), **common)


def test_streamed_request_verifies_headers_and_returns_the_claimed_digest() -> None:
    verified = verify_request(**_request(body=b"", streamed=True))
    assert verified.body_sha256 == sha256(BODY)
    assert digest_matches(verified.body_sha256, sha256(BODY))
    assert not digest_matches(verified.body_sha256, sha256(BODY + b" "))
    # Not streamed: the body is checked here, and no digest is handed back.
    assert verify_request(**_request()).body_sha256 is None


def test_streamed_request_needs_digest_and_type_and_no_body() -> None:
    assert _rejects(_request(body=b"", streamed=True, content_digest=None)) == (
        "content-digest missing"
    )
    assert _rejects(_request(body=b"", streamed=True, content_type=None)) == (
        "content-type missing"
    )
    short = f"sha-256=:{b64_encode(b'x' * 31)}:"
    assert "sha-256" in _rejects(_request(body=b"", streamed=True, content_digest=short))
    with pytest.raises(ValueError, match="streamed"):
        verify_request(**_request(streamed=True))


def test_a_request_signed_without_a_body_cannot_be_streamed() -> None:
    headers = sign_request(
        keys=KEYS,
        method="PUT",
        authority=AUTHORITY,
        path=PATH,
        query=QUERY,
        body=b"",
        content_type=None,
        created=NOW,
    )
    request = _request(
        body=b"",
        streamed=True,
        signature_input=headers["Signature-Input"],
        signature=headers["Signature"],
        method="PUT",
    )
    assert _rejects(request) == "covered components differ"


# -- the plain-shape fast path of the field parser ----------------------------------------

# Mostly what the fast path takes, sometimes what only the general parser may judge.
_TEXT = st.one_of(
    st.text(alphabet=" abz@-;=/:()", max_size=6),
    st.text(alphabet=' abz@-;=/:()"\\\x7f\x01é٣', max_size=6),
)
_LABELS = st.sampled_from(["sig1", "a", "*k", "Sig", "1a", "", "sha-256"])
_SPACES = st.sampled_from(["", " ", "  ", "\t", ","])


def _sf_string(value: str, escape: bool) -> str:
    if escape:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


@st.composite
def _inner_list_fields(draw: st.DrawFn) -> str:
    items = draw(st.lists(st.tuples(_TEXT, st.booleans()), max_size=4))
    between = draw(st.sampled_from([" ", " ", " ", "  ", "", " ;x"]))
    values = st.one_of(
        st.integers(-(10**16), 10**16).map(str),
        st.tuples(_TEXT, st.booleans()).map(lambda t: _sf_string(*t)),
        st.sampled_from(["1.5", "-", "", "x", "123456789012345", "1234567890123456", "-0"]),
    )
    params = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["created", "keyid", "nonce", "alg", "X", "", "a-b"]),
                st.sampled_from(["", "", "", " "]),
                values,
            ),
            max_size=5,
        )
    )
    body = between.join(_sf_string(*item) for item in items)
    tail = "".join(f";{space}{name}={value}" for name, space, value in params)
    lead, trail = draw(_SPACES), draw(_SPACES)
    more = draw(st.sampled_from(["", "", "", ", b=()", ","]))
    return f"{lead}{draw(_LABELS)}=({body}){tail}{trail}{more}"


@st.composite
def _binary_fields(draw: st.DrawFn) -> str:
    value = draw(st.text(alphabet="AZaz09+/=:;x ", max_size=48))
    lead, trail = draw(_SPACES), draw(_SPACES)
    more = draw(st.sampled_from(["", "", "", ", b=:AA==:", ";p=1", ","]))
    return f"{lead}{draw(_LABELS)}=:{value}:{trail}{more}"


@settings(max_examples=400)
@given(_inner_list_fields())
def test_the_fast_path_reads_inner_lists_exactly_as_the_general_parser(text: str) -> None:
    """Whatever the text, both give the same members or both refuse it."""
    assert _outcome(_parse_dictionary, text, True) == _outcome(_parse_general, text, True)


@settings(max_examples=400)
@given(_binary_fields())
def test_the_fast_path_reads_byte_sequences_exactly_as_the_general_parser(text: str) -> None:
    assert _outcome(_parse_dictionary, text, False) == _outcome(_parse_general, text, False)


@pytest.mark.parametrize(
    ("text", "inner_lists"),
    [
        ('sig1=("a" "b");created=123456789012345;keyid="k/0a";nonce="x;y=z"', True),
        ('sig1=("a");created=1234567890123456', True),
        ('sig1=("a");created=1.5', True),
        ('sig1=("a");created=-0', True),
        ('sig1=("a\\"b")', True),
        ('sig1=("a"  "b")', True),
        ('sig1=( "a")', True),
        ('sig1=("a";x)', True),
        ('sig1=("a"); created=1', True),
        ('sig1=("é")', True),
        ('sig1=("a")\t', True),
        ('sig1=("a"),', True),
        (',sig1=("a")', True),
        ("sig1=()", True),
        ("sig1=:AA==:", False),
        (" sha-256=:AA==: ", False),
        (",sig1=:AA==:", False),
        ("sig1=:AA==:;p=1", False),
        ("sig1=:A:", False),
        ("sig1=:AA==:, sig2=:AA==:", False),
    ],
)
def test_the_fast_path_and_the_general_parser_agree_at_the_edges(
    text: str, inner_lists: bool
) -> None:
    assert _outcome(_parse_dictionary, text, inner_lists) == _outcome(
        _parse_general, text, inner_lists
    )


def _outcome(parse: Any, text: str, inner_lists: bool) -> Any:
    try:
        return parse(text, inner_lists=inner_lists)
    except ValueError:
        return ValueError
