"""Password hashing for the people who log in to the review pages (argon2id).

Owns the one call into libsodium's `crypto_pwhash` (through pynacl). Hashes are the
self-describing `$argon2id$v=19$m=…,t=…,p=…$salt$hash` strings, so the cost can be
raised later without a migration. Must not: see or log a password anywhere else
than here, or compare hashes itself (libsodium's verify is constant-time).
"""

from __future__ import annotations

import nacl.exceptions
import nacl.pwhash

# libsodium's "interactive" limits: ~64 MiB and a fraction of a second per login.
# A login form is online, so a slow hash costs an attacker who stole the file, not
# the officer; the lockout stops guessing through the form itself.
_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
MIN_LENGTH = 12


def hash_password(password: str) -> str:
    """The argon2id hash string of `password` (with a fresh random salt)."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    digest: bytes = nacl.pwhash.argon2id.str(
        password.encode("utf-8"), opslimit=_OPSLIMIT, memlimit=_MEMLIMIT
    )
    return digest.decode("ascii")


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches the stored hash; any malformed hash is a mismatch."""
    try:
        ok: bool = nacl.pwhash.verify(stored.encode("ascii"), password.encode("utf-8"))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        return False
    return ok


# A hash that never verifies (a random one): checked when the name is unknown, so
# that a login for an unknown name costs as much time as one for a known name.
DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
    "Dm9nZXbPsnBZbVhQz0x0Wl7w2Mzr8ucS3fIDi7d3n3I"
)
