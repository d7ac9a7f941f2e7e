"""All cryptography of zvh-gateway, and the only importer of cryptography, nacl and pysodium.

Pure functions over bytes and JSON values: canonical JSON (`canonical`), encodings
(`encoding`), organisation keys and Ed25519 (`keys`), RFC 9421 request signatures
(`httpsig`), end-to-end envelopes (`envelope`) and the RFC 9497 OPRF (`oprf`). Nothing
here does I/O except reading and writing a private key file, reads the clock, or keeps
mutable state. Failures are one opaque `CryptoError` subclass each; the reason is for
logs, never for the caller.
"""

from __future__ import annotations

from gateway.crypto.canonical import canonical_json, canonical_sha256
from gateway.crypto.encoding import b64_decode, b64_encode, b64u_decode, b64u_encode, sha256
from gateway.crypto.envelope import (
    HEADER_FIELDS,
    KINDS,
    SUITE,
    envelope_header,
    hpke_info,
    open_envelope,
    payload_hash,
    seal,
    verify_outer,
)
from gateway.crypto.httpsig import (
    COVERED_NO_BODY,
    COVERED_WITH_BODY,
    VerifiedRequest,
    content_digest,
    normalise_authority,
    sign_request,
    signature_base,
    verify_request,
)
from gateway.crypto.keys import (
    OrgKeys,
    PublicKeys,
    kid_of,
    sign_record,
    verify_ed25519,
    verify_record,
)
from gateway.crypto.oprf import (
    blind,
    blind_evaluate,
    derive_key_pair,
    evaluate,
    finalize,
    generate_key_pair,
    is_valid_bsn,
    pid_input,
)

__all__ = [
    "COVERED_NO_BODY",
    "COVERED_WITH_BODY",
    "HEADER_FIELDS",
    "KINDS",
    "SUITE",
    "OrgKeys",
    "PublicKeys",
    "VerifiedRequest",
    "b64_decode",
    "b64_encode",
    "b64u_decode",
    "b64u_encode",
    "blind",
    "blind_evaluate",
    "canonical_json",
    "canonical_sha256",
    "content_digest",
    "derive_key_pair",
    "envelope_header",
    "evaluate",
    "finalize",
    "generate_key_pair",
    "hpke_info",
    "is_valid_bsn",
    "kid_of",
    "normalise_authority",
    "open_envelope",
    "payload_hash",
    "pid_input",
    "seal",
    "sha256",
    "sign_record",
    "sign_request",
    "signature_base",
    "verify_ed25519",
    "verify_outer",
    "verify_record",
    "verify_request",
]
