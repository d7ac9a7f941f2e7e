"""Request authentication (PROTOCOL §2): RFC 9421 signatures with ed25519, RFC 9530 digests.

Owns the signature base, the Signature-Input / Signature / Content-Digest fields, and
a deliberately small, strict RFC 8941 parser for exactly the shapes the protocol
allows. Every verification failure is one `SignatureError` whose `reason` is for the
log only. Must not read the clock (`now_s` is passed in), look keys up itself
(`resolve_key` is passed in), remember nonces (replay is the caller's job: it gets the
keyid and nonce back), or know about aiohttp; callers hand in raw wire values.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.crypto.encoding import b64_decode, b64_encode, b64u_decode, b64u_encode, sha256
from gateway.crypto.keys import ORG_ID_RE, OrgKeys, verify_ed25519
from gateway.errors import SignatureError

__all__ = [
    "COVERED_NO_BODY",
    "COVERED_WITH_BODY",
    "VerifiedRequest",
    "content_digest",
    "digest_matches",
    "normalise_authority",
    "prepare_request",
    "sign_request",
    "signature_base",
    "verify_request",
]

COVERED_NO_BODY: tuple[str, ...] = ("@method", "@authority", "@path", "@query")
COVERED_WITH_BODY: tuple[str, ...] = (*COVERED_NO_BODY, "content-digest", "content-type")

_ALG = "ed25519"
_PARAM_NAMES = frozenset({"created", "nonce", "keyid", "alg"})
_MIN_NONCE_LEN = 16
_DEFAULT_PORTS = {"http": 80, "https": 443}
_KID_RE = re.compile(r"[0-9a-f]{32}")

# RFC 8941 tokens (ASCII only, explicit ranges).
_KEY_RE = re.compile(r"[a-z*][a-z0-9_.*-]*")
_STRING_RE = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_INTEGER_RE = re.compile(r"-?[0-9]{1,15}")
_BINARY_RE = re.compile(r":([A-Za-z0-9+/=]*):")
_SP_RE = re.compile(r" *")
_OWS_RE = re.compile(r"[ \t]*")
_UNESCAPE_RE = re.compile(r"\\([\"\\])")
# The one-member shapes that signers send, in their plainest spelling (no escapes,
# single spaces, no extra whitespace inside): matched whole, they parse to exactly
# what `_Cursor` gives, without it (a differential test holds the two together).
_CHARS = r"[\x20\x21\x23-\x5b\x5d-\x7e]*"  # an sf-string's characters, no escapes
_KEY = r"[a-z*][a-z0-9_.*-]*"
_ONE_BINARY_RE = re.compile(rf" *({_KEY})=(:([A-Za-z0-9+/=]*):)[ \t]*")
_ONE_INNER_LIST_RE = re.compile(
    rf' *({_KEY})=(\(((?:"{_CHARS}"(?: "{_CHARS}")*)?)\)'
    rf'((?:;{_KEY}=(?:"{_CHARS}"|-?[0-9]{{1,15}}))*))[ \t]*'
)
_PLAIN_ITEM_RE = re.compile(f'"({_CHARS})"')
_PLAIN_PARAM_RE = re.compile(rf';({_KEY})=(?:"({_CHARS})"|(-?[0-9]+))')

_ParamValue = int | str


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """Who signed a request that verified; (keyid, nonce) is the replay-cache key."""

    org: str
    kid: str
    keyid: str
    created: int
    nonce: str
    # Only for a streamed body: the SHA-256 its signed Content-Digest claims.
    body_sha256: bytes | None = None


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request that passed every check but its signature: `verified` holds once
    `signed` (public key, signature, signature base) verifies."""

    verified: VerifiedRequest
    signed: tuple[bytes, bytes, bytes]


# -- small helpers --------------------------------------------------------------------


def content_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest field value for `body`, sha-256 only."""
    return f"sha-256=:{b64_encode(sha256(body))}:"


def normalise_authority(authority: str, scheme: str = "http") -> str:
    """Lowercase host[:port], default port for `scheme` omitted (RFC 9421 §2.2.3)."""
    default_port = _DEFAULT_PORTS.get(scheme.lower())
    if default_port is None:
        raise ValueError(f"unsupported scheme {scheme!r}")
    text = authority.lower()
    if not text or not text.isascii() or any(c in text for c in " \t\r\n@/?#\\"):
        raise ValueError("not a host[:port] authority")
    if text.startswith("["):  # IPv6 literal: the port is after the closing bracket
        end = text.find("]")
        if end == -1 or (end + 1 < len(text) and text[end + 1] != ":"):
            raise ValueError("bad IPv6 authority")
        host, port = text[: end + 1], text[end + 2 :]
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError("authority has no host")
    if not port:  # RFC 3986 §6.2.3: an empty port is the default port
        return host
    if not port.isdigit() or int(port) > 65535:
        raise ValueError("bad port in authority")
    number = int(port)
    return host if number == default_port else f"{host}:{number}"


def _sf_string(value: str) -> str:
    """Serialise an RFC 8941 sf-string (printable ASCII; escape backslash and quote)."""
    if not value.isascii() or not value.isprintable():
        raise ValueError("sf-string must be printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serialize_params(components: Sequence[str], params: Sequence[tuple[str, _ParamValue]]) -> str:
    """The inner list of a Signature-Input member, parameters in the order given."""
    out = "(" + " ".join(_sf_string(c) for c in components) + ")"
    for name, value in params:
        if _KEY_RE.fullmatch(name) is None:
            raise ValueError("bad parameter name")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("parameters are integers or strings")
        out += f";{name}={value}" if isinstance(value, int) else f";{name}={_sf_string(value)}"
    return out


def _base(components: Sequence[tuple[str, str]], signature_params: str) -> bytes:
    """RFC 9421 §2.5 signature base from (component id, value) pairs."""
    lines = []
    for name, value in (*components, ("@signature-params", signature_params)):
        # A line break inside a value would let one component forge another line.
        if "\n" in value or "\r" in value:
            raise ValueError(f"line break in {name}")
        lines.append(f'"{name}": {value}')
    return "\n".join(lines).encode("ascii")


def signature_base(
    *,
    method: str,
    authority: str,
    path: str,
    query: str,
    content_digest: str | None,
    content_type: str | None,
    signature_params: str,
) -> bytes:
    """The bytes an ed25519 request signature covers (PROTOCOL §2).

    `path` and `query` are raw, still percent-encoded; `query` has no leading "?".
    """
    components = [
        ("@method", method),
        ("@authority", authority),
        ("@path", path or "/"),
        ("@query", "?" + query),
    ]
    if content_digest is not None and content_type is not None:
        components += [("content-digest", content_digest), ("content-type", content_type)]
    return _base(components, signature_params)


def _sign_base(keys: OrgKeys, base: bytes) -> bytes:
    return keys.sign(base)


def _verify_base(public_raw: bytes, base: bytes, signature: bytes) -> bool:
    return verify_ed25519(public_raw, signature, base)


# -- signing --------------------------------------------------------------------------


def sign_request(
    *,
    keys: OrgKeys,
    method: str,
    authority: str,
    path: str,
    query: str,
    body: bytes,
    content_type: str | None,
    created: int,
    nonce: bytes | None = None,
    label: str = "sig1",
    body_sha256: bytes | None = None,
) -> dict[str, str]:
    """Headers to add to a request: Signature-Input, Signature, Content-Digest (with a body).

    `authority` must be the receiving hub's public authority as it is configured there
    (see `normalise_authority`); the caller sends Content-Type itself. A body that is
    streamed from a file (an attachment blob) is passed as its SHA-256, `body_sha256`,
    with `body` empty: the signature is the same as over the bytes themselves.
    """
    if _KEY_RE.fullmatch(label) is None:
        raise ValueError("label must be an RFC 8941 key")
    if isinstance(created, bool) or not isinstance(created, int):
        raise ValueError("created is integer seconds")
    if nonce is None:
        nonce = os.urandom(_MIN_NONCE_LEN)
    elif len(nonce) < _MIN_NONCE_LEN:
        raise ValueError("nonce must be at least 16 bytes")
    digest: str | None = None
    if body and body_sha256 is not None:
        raise ValueError("give the body or its digest, not both")
    if body or body_sha256 is not None:
        if content_type is None:
            raise ValueError("a request with a body needs a content type")
        digest = (
            content_digest(body) if body_sha256 is None else f"sha-256=:{b64_encode(body_sha256)}:"
        )
        content_type = content_type.strip(" \t")  # as the verifier will see the field
        covered = COVERED_WITH_BODY
    else:
        content_type = None
        covered = COVERED_NO_BODY
    params = _serialize_params(
        covered,
        [
            ("created", created),
            ("nonce", b64u_encode(nonce)),
            ("keyid", f"{keys.org}/{keys.signing_kid}"),
            ("alg", _ALG),
        ],
    )
    base = signature_base(
        method=method,
        authority=authority,
        path=path,
        query=query,
        content_digest=digest,
        content_type=content_type,
        signature_params=params,
    )
    headers = {
        "Signature-Input": f"{label}={params}",
        "Signature": f"{label}=:{b64_encode(_sign_base(keys, base))}:",
    }
    if digest is not None:
        headers["Content-Digest"] = digest
    return headers


# -- strict RFC 8941 parsing (just what §2 needs) ----------------------------------------


@dataclass(frozen=True, slots=True)
class _InnerList:
    items: tuple[str, ...]
    params: tuple[tuple[str, _ParamValue], ...]


@dataclass(frozen=True, slots=True)
class _Member:
    label: str
    raw: str  # the member value exactly as received, after "label="
    value: _InnerList | bytes


class _Cursor:
    """Position in a field value; every method raises ValueError on a mismatch."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def match(self, pattern: re.Pattern[str]) -> re.Match[str]:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise ValueError(f"unexpected input at {self.pos}")
        self.pos = found.end()
        return found

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise ValueError(f"expected {char!r} at {self.pos}")
        self.pos += 1

    def string(self) -> str:
        return _UNESCAPE_RE.sub(r"\1", self.match(_STRING_RE).group(1))

    def param_value(self) -> _ParamValue:
        if self.peek() == '"':
            return self.string()
        number = int(self.match(_INTEGER_RE).group(0))
        if self.peek() == "." or self.peek().isdigit():  # a decimal, or over 15 digits
            raise ValueError("not an sf-integer")
        return number

    def parameters(self) -> tuple[tuple[str, _ParamValue], ...]:
        params: list[tuple[str, _ParamValue]] = []
        while self.peek() == ";":
            self.pos += 1
            self.match(_SP_RE)
            name = self.match(_KEY_RE).group(0)
            # A bare key is boolean true: not a shape this protocol uses, so reject it.
            self.expect("=")
            params.append((name, self.param_value()))
        return tuple(params)

    def inner_list(self) -> _InnerList:
        self.expect("(")
        items: list[str] = []
        while True:
            self.match(_SP_RE)
            if self.peek() == ")":
                self.pos += 1
                return _InnerList(tuple(items), self.parameters())
            items.append(self.string())
            # Component parameters (;sf, ;key, ;req, ...) change what is covered: reject.
            if self.peek() == ";":
                raise ValueError("component parameters are not allowed")
            if self.peek() not in (" ", ")"):
                raise ValueError(f"unexpected input at {self.pos}")

    def binary(self) -> bytes:
        value = b64_decode(self.match(_BINARY_RE).group(1))
        if self.peek() == ";":
            raise ValueError("parameters are not allowed here")
        return value


def _parse_dictionary(text: str, *, inner_lists: bool) -> list[_Member]:
    """Members of an RFC 8941 Dictionary, in order and with duplicates kept.

    Values must all be inner lists of strings (`inner_lists`) or all byte sequences.
    Duplicates are kept (RFC 8941 would let the last one win) so that callers can
    refuse a field that names the same label twice.
    """
    if inner_lists:
        one = _ONE_INNER_LIST_RE.fullmatch(text)
        if one is not None:
            # Whole, the match leaves one way to cut these into items and parameters.
            items = tuple(_PLAIN_ITEM_RE.findall(one.group(3)))
            params = tuple(
                (p.group(1), p.group(2) if p.group(3) is None else int(p.group(3)))
                for p in _PLAIN_PARAM_RE.finditer(one.group(4))
            )
            return [_Member(one.group(1), one.group(2), _InnerList(items, params))]
    else:
        one = _ONE_BINARY_RE.fullmatch(text)
        if one is not None:
            return [_Member(one.group(1), one.group(2), b64_decode(one.group(3)))]
    return _parse_general(text, inner_lists=inner_lists)


def _parse_general(text: str, *, inner_lists: bool) -> list[_Member]:
    cursor = _Cursor(text)
    cursor.match(_SP_RE)
    members: list[_Member] = []
    while True:
        label = cursor.match(_KEY_RE).group(0)
        cursor.expect("=")
        start = cursor.pos
        value: _InnerList | bytes = cursor.inner_list() if inner_lists else cursor.binary()
        members.append(_Member(label, text[start : cursor.pos], value))
        cursor.match(_OWS_RE)
        if cursor.pos == len(text):
            return members
        cursor.expect(",")
        cursor.match(_OWS_RE)
        if cursor.pos == len(text):
            raise ValueError("trailing comma")


# -- verification ---------------------------------------------------------------------


def _nonce_len(nonce: str) -> int:
    try:
        return len(b64u_decode(nonce))
    except ValueError:
        return -1


def _claimed_digest(field: str | None) -> tuple[str, bytes]:
    """The Content-Digest field (trimmed) and the sha-256 value it claims."""
    if field is None:
        raise SignatureError("content-digest missing")
    field = field.strip(" \t")
    try:
        members = _parse_dictionary(field, inner_lists=False)
    except ValueError:
        raise SignatureError("content-digest malformed") from None
    sha = [m.value for m in members if m.label == "sha-256"]
    if len(sha) != 1 or not isinstance(sha[0], bytes) or len(sha[0]) != 32:
        raise SignatureError("content-digest needs exactly one sha-256")
    return field, sha[0]


def _check_digest(field: str | None, body: bytes) -> str:
    value, claimed = _claimed_digest(field)
    if not hmac.compare_digest(claimed, sha256(body)):
        raise SignatureError("content-digest mismatch")
    return value


def digest_matches(claimed: bytes, actual: bytes) -> bool:
    """Compare a streamed body's SHA-256 with the one its signed Content-Digest claimed."""
    return hmac.compare_digest(claimed, actual)


def _signature_fields(signature_input: str, signature: str) -> tuple[_Member, bytes]:
    """The one (Signature-Input member, signature bytes) pair of a request."""
    try:
        inputs = _parse_dictionary(signature_input, inner_lists=True)
    except ValueError:
        raise SignatureError("signature-input malformed") from None
    try:
        signatures = _parse_dictionary(signature, inner_lists=False)
    except ValueError:
        raise SignatureError("signature malformed") from None
    # One signature only: a second one could cover less, and "any valid one wins"
    # would let a party on the path add its own.
    if len(inputs) != 1 or len(signatures) != 1:
        raise SignatureError("exactly one signature expected")
    member, sig_member = inputs[0], signatures[0]
    if member.label != sig_member.label:
        raise SignatureError("signature labels differ")
    if not isinstance(sig_member.value, bytes):
        raise SignatureError("signature malformed")
    if len(sig_member.value) != 64:
        raise SignatureError("signature is not 64 bytes")
    return member, sig_member.value


def _signature_params(
    member: _Member, covered: tuple[str, ...], now_s: int, max_skew_s: int
) -> tuple[int, str, str]:
    """Check components and parameters; return (created, nonce, keyid)."""
    spec = member.value
    if not isinstance(spec, _InnerList):
        raise SignatureError("signature-input malformed")
    if spec.items != covered:
        raise SignatureError("covered components differ")
    names = [name for name, _ in spec.params]
    if len(names) != len(_PARAM_NAMES) or set(names) != _PARAM_NAMES:
        raise SignatureError("signature parameters differ")
    params = dict(spec.params)
    if params["alg"] != _ALG:
        raise SignatureError("alg is not ed25519")
    created, nonce, keyid = params["created"], params["nonce"], params["keyid"]
    if not isinstance(created, int):
        raise SignatureError("created is not an integer")
    # Both directions: a signature dated in the future would outlive the replay window.
    if abs(created - now_s) > max_skew_s:
        raise SignatureError("created outside the allowed clock skew")
    if not isinstance(nonce, str) or _nonce_len(nonce) < _MIN_NONCE_LEN:
        raise SignatureError("nonce malformed")
    if not isinstance(keyid, str):
        raise SignatureError("keyid malformed")
    return created, nonce, keyid


def prepare_request(
    *,
    method: str,
    authority: str,
    path: str,
    query: str,
    body: bytes,
    signature_input: str | None,
    signature: str | None,
    content_digest: str | None,
    content_type: str | None,
    now_s: int,
    resolve_key: Callable[[str, str], bytes | None],
    max_skew_s: int = 300,
    streamed: bool = False,
) -> PreparedRequest:
    """Every check of a signed request (PROTOCOL §2) but the signature itself, which
    the caller makes over the returned `signed` (key, signature, base): in the node's
    verifier process (gateway.crypto.verifier), or at once with `verify_request`.
    Raises SignatureError(reason).

    `authority` is the verifier's own configured public authority, never the Host
    header; `path`/`query` are raw from the wire; the fields are the combined values.
    Replay (nonce reuse) is left to the caller, who gets keyid and nonce back.

    `streamed=True` is for a body that is not read yet (an attachment blob, which
    must never sit whole in memory): `body` must be empty, the signature is checked
    over the Content-Digest as received, and the claimed SHA-256 is returned in
    `body_sha256`; the caller hashes the body while streaming it and must refuse the
    request (`digest_matches`) if the two differ at the end.
    """
    if signature_input is None or signature is None:
        raise SignatureError("signature fields missing")
    if streamed and body:
        raise ValueError("a streamed request's body is checked by the caller")
    member, sig = _signature_fields(signature_input, signature)
    covered = COVERED_WITH_BODY if (body or streamed) else COVERED_NO_BODY
    created, nonce, keyid = _signature_params(member, covered, now_s, max_skew_s)
    org, _, kid = keyid.partition("/")
    if ORG_ID_RE.fullmatch(org) is None or _KID_RE.fullmatch(kid) is None:
        raise SignatureError("keyid malformed")

    digest_value: str | None = None
    type_value: str | None = None
    claimed: bytes | None = None
    if body or streamed:
        if content_type is None:
            raise SignatureError("content-type missing")
        type_value = content_type.strip(" \t")
        if streamed:
            digest_value, claimed = _claimed_digest(content_digest)
        else:
            digest_value = _check_digest(content_digest, body)

    public_raw = resolve_key(org, kid)
    if public_raw is None:
        raise SignatureError("unknown key")
    try:
        # The signer's own serialisation of the parameters is what it signed, so the
        # received member value is used verbatim (parameter order included).
        base = signature_base(
            method=method,
            authority=authority,
            path=path,
            query=query,
            content_digest=digest_value,
            content_type=type_value,
            signature_params=member.raw,
        )
    except ValueError:
        raise SignatureError("signature base not representable") from None
    verified = VerifiedRequest(
        org=org, kid=kid, keyid=keyid, created=created, nonce=nonce, body_sha256=claimed
    )
    return PreparedRequest(verified, (public_raw, sig, base))


def verify_request(**request: Any) -> VerifiedRequest:
    """Verify a signed request (PROTOCOL §2) or raise SignatureError(reason): the
    checks of `prepare_request` (which takes the same keyword arguments) and then the
    signature."""
    prepared = prepare_request(**request)
    public_raw, sig, base = prepared.signed
    if not _verify_base(public_raw, base, sig):
        raise SignatureError("signature invalid")
    return prepared.verified
