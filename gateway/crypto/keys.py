"""Organisation keys (PROTOCOL §1): Ed25519 signing, X25519 encryption, kids, key files.

Owns private key material: creating it, loading and saving the 0600 key file, and
signing with it. Private keys never leave an `OrgKeys` except through `private_json()`
and `save()`; nothing here prints, logs or puts them in an exception message. Also
owns Ed25519 verification for the whole project (`verify_ed25519`). Must not do I/O
other than the key file itself, and must not decide whether a key is trusted, current
or revoked (that is the key store's job).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pysodium
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.crypto.canonical import canonical_json
from gateway.crypto.encoding import b64u_decode, b64u_encode, sha256
from gateway.errors import ConfigError

__all__ = [
    "ORG_ID_RE",
    "OrgKeys",
    "PublicKeys",
    "kid_of",
    "sign_record",
    "verify_ed25519",
    "verify_record",
]

# PROTOCOL §1. An org id also appears inside keyid="<org>/<kid>", so it must never
# hold a "/" or anything that could make that split ambiguous.
ORG_ID_RE = re.compile(r"[a-z][a-z0-9-]{1,62}")

_KEY_LEN = 32
_BYTES_LIKE = (bytes, bytearray, memoryview)
_SIG_LEN = 64
_KEY_FILE_FIELDS = frozenset({"org", "signing_private_key", "encryption_private_key"})
# Never write a key through a symlink an attacker may have planted at the temp name.
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def kid_of(public_raw: bytes) -> str:
    """Key id: first 16 bytes of SHA-256 of the raw 32-byte public key, lowercase hex."""
    if len(public_raw) != _KEY_LEN:
        raise ValueError("a public key is 32 bytes")
    return sha256(bytes(public_raw))[:16].hex()


def _check_org(org: object) -> str:
    if not isinstance(org, str) or ORG_ID_RE.fullmatch(org) is None:
        raise ValueError("organisation id must match ^[a-z][a-z0-9-]{1,62}$")
    return org


@dataclass(frozen=True, slots=True)
class PublicKeys:
    """An organisation's current public keys, as its directory entry lists them."""

    org: str
    signing_key: bytes
    encryption_key: bytes

    def __post_init__(self) -> None:
        _check_org(self.org)
        for name in ("signing_key", "encryption_key"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != _KEY_LEN:
                raise ValueError(f"{name} must be 32 raw bytes")

    @property
    def signing_kid(self) -> str:
        return kid_of(self.signing_key)

    @property
    def encryption_kid(self) -> str:
        return kid_of(self.encryption_key)

    def to_json(self) -> dict[str, str]:
        return {
            "org": self.org,
            "signing_key": b64u_encode(self.signing_key),
            "signing_kid": self.signing_kid,
            "encryption_key": b64u_encode(self.encryption_key),
            "encryption_kid": self.encryption_kid,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PublicKeys:
        """Parse `to_json()` output (other members, e.g. a directory's `role`, are ignored).

        Listed kids must match the keys: a kid that names another key than the one
        shipped beside it would let a directory show one key and verify with another.
        """
        if not isinstance(data, Mapping):
            raise ValueError("public keys must be a JSON object")
        try:
            org, sk, ek = data["org"], data["signing_key"], data["encryption_key"]
        except KeyError as exc:
            raise ValueError(f"public keys lack {exc.args[0]!r}") from None
        if not isinstance(sk, str) or not isinstance(ek, str):
            raise ValueError("public keys must be b64u strings")
        keys = cls(org=_check_org(org), signing_key=b64u_decode(sk), encryption_key=b64u_decode(ek))
        for name, kid in (
            ("signing_kid", keys.signing_kid),
            ("encryption_kid", keys.encryption_kid),
        ):
            if name in data and data[name] != kid:
                raise ValueError(f"{name} does not match its key")
        return keys


class OrgKeys:
    """One organisation's private keys. The repr shows the org and kids, never keys."""

    __slots__ = (
        "_encryption_key",
        "_encryption_kid",
        "_encryption_private",
        "_org",
        "_signing_key",
        "_signing_kid",
        "_signing_private",
    )

    def __init__(
        self,
        org: str,
        signing_private: Ed25519PrivateKey,
        encryption_private: X25519PrivateKey,
    ) -> None:
        self._org = _check_org(org)
        self._signing_private = signing_private
        # envelope.py decrypts with this object directly; it is not part of the public API.
        self._encryption_private = encryption_private
        self._signing_key = signing_private.public_key().public_bytes_raw()
        self._encryption_key = encryption_private.public_key().public_bytes_raw()
        self._signing_kid = kid_of(self._signing_key)
        self._encryption_kid = kid_of(self._encryption_key)

    # -- construction -------------------------------------------------------------

    @classmethod
    def generate(cls, org: str) -> OrgKeys:
        return cls(org, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_private(cls, org: str, signing_seed: bytes, encryption_private: bytes) -> OrgKeys:
        """Build from the raw 32-byte Ed25519 seed and raw 32-byte X25519 private key."""
        if len(signing_seed) != _KEY_LEN or len(encryption_private) != _KEY_LEN:
            raise ValueError("private keys are 32 raw bytes")
        return cls(
            org,
            Ed25519PrivateKey.from_private_bytes(bytes(signing_seed)),
            X25519PrivateKey.from_private_bytes(bytes(encryption_private)),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OrgKeys:
        """Read a private key file (PROTOCOL §1); any problem is a ConfigError naming the file.

        Messages name the file and the problem, never a value from it, and the original
        exception is dropped (`from None`): a traceback of a decode error could carry
        key material into a log.
        """
        name = os.fspath(path)
        try:
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read key file {name}: {exc.strerror or 'error'}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"key file {name} is not UTF-8") from None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise ConfigError(f"key file {name} is not valid JSON") from None
        if not isinstance(data, dict):
            raise ConfigError(f"key file {name} must hold a JSON object")
        if set(data) != _KEY_FILE_FIELDS:
            raise ConfigError(
                f"key file {name} must have exactly the fields {sorted(_KEY_FILE_FIELDS)}"
            )
        org = data["org"]
        if not isinstance(org, str) or ORG_ID_RE.fullmatch(org) is None:
            raise ConfigError(f"key file {name}: 'org' is not a valid organisation id")
        raw: dict[str, bytes] = {}
        for field in ("signing_private_key", "encryption_private_key"):
            try:
                raw[field] = b64u_decode(data[field])
            except ValueError:
                raise ConfigError(f"key file {name}: {field!r} is not b64u") from None
            if len(raw[field]) != _KEY_LEN:
                raise ConfigError(f"key file {name}: {field!r} is not 32 bytes")
        try:
            return cls.from_private(org, raw["signing_private_key"], raw["encryption_private_key"])
        except ValueError:
            raise ConfigError(f"key file {name}: unusable private key") from None

    # -- persistence --------------------------------------------------------------

    def private_json(self) -> dict[str, str]:
        return {
            "org": self._org,
            "signing_private_key": b64u_encode(self._signing_private.private_bytes_raw()),
            "encryption_private_key": b64u_encode(self._encryption_private.private_bytes_raw()),
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the key file with mode 0600, atomically; refuse to replace one unless told.

        The bytes go to a temporary file in the same directory that is created 0600
        (O_EXCL, so it is never world-readable, not even for a moment) and then moved
        into place, so a crash never leaves a half-written key file behind.
        """
        name = os.fspath(path)
        if not overwrite and os.path.lexists(name):
            raise ConfigError(f"key file {name} exists; refusing to overwrite it")
        directory = os.path.dirname(os.path.abspath(name))
        tmp = os.path.join(directory, f".{os.path.basename(name)}.{os.urandom(6).hex()}.tmp")
        payload = (json.dumps(self.private_json(), indent=1) + "\n").encode("utf-8")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, 0o600)  # the umask may only narrow; make 0600 exact
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            if overwrite:
                os.replace(tmp, name)
            else:
                _link_no_clobber(tmp, name)
            _fsync_dir(directory)
        except FileExistsError:
            raise ConfigError(f"key file {name} exists; refusing to overwrite it") from None
        except OSError as exc:
            raise ConfigError(f"cannot write key file {name}: {exc.strerror or 'error'}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- public view and signing --------------------------------------------------

    @property
    def org(self) -> str:
        return self._org

    @property
    def signing_key(self) -> bytes:
        return self._signing_key

    @property
    def signing_kid(self) -> str:
        return self._signing_kid

    @property
    def encryption_key(self) -> bytes:
        return self._encryption_key

    @property
    def encryption_kid(self) -> str:
        return self._encryption_kid

    def public(self) -> PublicKeys:
        return PublicKeys(self._org, self._signing_key, self._encryption_key)

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (64 bytes) over `message`."""
        return self._signing_private.sign(message)

    def __repr__(self) -> str:
        return (
            f"OrgKeys(org={self._org!r}, signing_kid={self._signing_kid!r}, "
            f"encryption_kid={self._encryption_kid!r})"
        )

    def __reduce__(self) -> Any:
        # Pickling would copy private keys into caches, queues or crash dumps.
        raise TypeError("OrgKeys cannot be pickled")

    # Immutable: a copy is the same object (and must not go through __reduce__).
    def __copy__(self) -> OrgKeys:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> OrgKeys:
        return self


def _link_no_clobber(tmp: str, name: str) -> None:
    """Move `tmp` to `name` only if `name` does not exist, without a check-then-act race."""
    try:
        os.link(tmp, name)  # atomic, and fails with FileExistsError if `name` exists
    except FileExistsError:
        raise
    except OSError:
        # No hard links on this file system: fall back to a re-check and a rename.
        if os.path.lexists(name):
            raise FileExistsError(name) from None
        os.replace(tmp, name)


def _fsync_dir(directory: str) -> None:
    # The rename is durable only once the directory entry is; best effort where
    # directories cannot be opened (the file itself was already fsynced).
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# Ed25519 verification is libsodium's crypto_sign_ed25519_verify_detached, from the
# system libsodium that pysodium has already loaded and initialised (sodium_init), bound
# once more through ctypes.PyDLL: a PyDLL call keeps the GIL. That is the point. PyNaCl
# (cffi) and pysodium (ctypes.CDLL) release the GIL around every call, and the ~40 us of
# a verification is then long enough for the hub's database thread to take the GIL:
# the event loop waited for it again after every signature (py-spy --native on the hub
# under bench/exchange.py: 12% of the loop's wall time in pthread_cond_timedwait right
# after crypto_sign_open, about twice the verification itself).
_SODIUM = ctypes.PyDLL(pysodium.sodium._name)
_verify_detached = _SODIUM.crypto_sign_ed25519_verify_detached
_verify_detached.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p)
_verify_detached.restype = ctypes.c_int


def verify_ed25519(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature; never raises on bad input.

    Verification runs in libsodium, not OpenSSL: it is about twice as fast here, which
    matters because the hub verifies every request and every envelope, and it is
    stricter (it also refuses small-order keys and R values and non-canonical
    encodings), which only ever turns away signatures no honest signer makes. With
    nothing to parse per key, there is no key cache to keep. The call keeps the GIL
    (see `_SODIUM`).
    """
    # isinstance before bytes(): bytes(64) would be 64 zero bytes, not an error.
    if not isinstance(public_raw, _BYTES_LIKE) or not isinstance(message, _BYTES_LIKE):
        return False
    if not isinstance(signature, _BYTES_LIKE):
        return False
    # Lengths first: libsodium reads exactly 32 key and 64 signature bytes through raw
    # pointers.
    if len(public_raw) != _KEY_LEN or len(signature) != _SIG_LEN:
        return False
    data = bytes(message)
    result: int = _verify_detached(bytes(signature), data, len(data), bytes(public_raw))
    return result == 0


def _record_bytes(record: Mapping[str, Any]) -> bytes:
    # The signature lives inside the record it signs, so it is never part of its input.
    return canonical_json({k: v for k, v in record.items() if k != "sig"})


def sign_record(keys: OrgKeys, record: Mapping[str, Any]) -> str:
    """b64u Ed25519 signature over the canonical JSON of `record` without its "sig"."""
    return b64u_encode(keys.sign(_record_bytes(record)))


def verify_record(public_raw: bytes, record: Mapping[str, Any], sig_b64u: str) -> bool:
    """Check a `sign_record` signature; False on any malformed input."""
    try:
        signature = b64u_decode(sig_b64u)
        message = _record_bytes(record)
    except (ValueError, TypeError, AttributeError, RecursionError):
        return False
    return verify_ed25519(public_raw, signature, message)
