"""The pseudonymiser's OPRF key (PROTOCOL §6) and its 0600 key file.

Owns the one secret of the national check: the ristretto255 scalar skS. It is made
with RFC 9497 `DeriveKeyPair` when a seed is given (so the RFC's Appendix A.1.1 key
can be reproduced through a running service) or drawn at random, written atomically
with mode 0600 and never printed, logged or put in an exception message. The key id
(first 16 bytes of SHA-256 of pkS, hex) is what logs, ledgers and the CLI name.

Must not evaluate anything itself (that is `oprf.blind_evaluate`) and must not
decide who may use the key.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from gateway.crypto.encoding import b64u_decode, b64u_encode, sha256
from gateway.crypto.keys import _fsync_dir, _link_no_clobber
from gateway.crypto.oprf import (
    _check_scalar,
    _mult_base,
    blind_evaluate,
    derive_key_pair,
    evaluate,
    generate_key_pair,
)
from gateway.errors import ConfigError, CryptoError

__all__ = ["SUITE", "OprfKey"]

SUITE = "OPRF(ristretto255, SHA-512)"
_FIELDS = frozenset({"suite", "mode", "private_key", "public_key"})
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True, slots=True, repr=False)
class OprfKey:
    """skS and pkS. The repr shows the key id only."""

    _private: bytes
    public_key: bytes

    def __repr__(self) -> str:
        return f"OprfKey(key_id={self.key_id})"

    @classmethod
    def generate(cls, seed: bytes | None = None, info: bytes = b"") -> OprfKey:
        """RFC 9497 DeriveKeyPair(seed, info) when a 32-byte seed is given, else random."""
        if seed is None:
            sk, pk = generate_key_pair()
        else:
            sk, pk = derive_key_pair(seed, info)
        return cls(sk, pk)

    @property
    def key_id(self) -> str:
        return sha256(self.public_key)[:16].hex()

    def blind_evaluate(self, blinded_element: bytes) -> bytes:
        """RFC 9497 BlindEvaluate with this key; CryptoError for a bad element."""
        return blind_evaluate(self._private, blinded_element)

    def evaluate(self, input_: bytes) -> bytes:
        """RFC 9497 Evaluate: the PRF output for an input the key holder knows. Only for
        published synthetic inputs (the canary), never for a real person's."""
        return evaluate(self._private, input_)

    # -- the key file ------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key file atomically with mode 0600; never replaces an existing one
        (a silently replaced OPRF key changes every pid in the country)."""
        name = os.fspath(path)
        if os.path.lexists(name):
            raise ConfigError(f"OPRF key file {name} exists; refusing to overwrite it")
        directory = os.path.dirname(os.path.abspath(name))
        tmp = os.path.join(directory, f".{os.path.basename(name)}.{os.urandom(6).hex()}.tmp")
        payload = {
            "suite": SUITE,
            "mode": 0,
            "private_key": b64u_encode(self._private),
            "public_key": b64u_encode(self.public_key),
        }
        data = (json.dumps(payload, indent=1) + "\n").encode("utf-8")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            _link_no_clobber(tmp, name)
            _fsync_dir(directory)
        except FileExistsError:
            raise ConfigError(f"OPRF key file {name} exists; refusing to overwrite it") from None
        except OSError as exc:
            raise ConfigError(f"cannot write OPRF key file {name}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OprfKey:
        """Read and check the key file; errors name the file and the problem, never a value."""
        name = os.fspath(path)
        try:
            info = os.stat(name)
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read OPRF key file {name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"OPRF key file {name} is not UTF-8") from None
        if info.st_mode & 0o077:
            # Fail closed: a key others could have read is a key others may hold.
            raise ConfigError(f"OPRF key file {name} is readable by others; chmod 600 it")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise ConfigError(f"OPRF key file {name} is not valid JSON") from None
        if not isinstance(data, dict) or set(data) != _FIELDS:
            raise ConfigError(
                f"OPRF key file {name} must have exactly the fields {sorted(_FIELDS)}"
            )
        if data["suite"] != SUITE or data["mode"] != 0:
            raise ConfigError(f"OPRF key file {name} is not for {SUITE} mode 0")
        try:
            sk = b64u_decode(data["private_key"])
            pk = b64u_decode(data["public_key"])
        except (TypeError, ValueError):
            raise ConfigError(f"OPRF key file {name}: keys are not b64u") from None
        key = cls(sk, pk)
        try:
            # pkS = skS * G: a file whose halves do not belong together is corrupt.
            valid = _mult_base(_check_scalar(sk, "key")) == pk
        except (CryptoError, ValueError):
            valid = False
        if not valid:
            raise ConfigError(f"OPRF key file {name}: the private and public key do not match")
        return key
