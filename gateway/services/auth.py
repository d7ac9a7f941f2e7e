"""Request authentication (PROTOCOL §2): signature, key validity and the replay cache.

The checks are `gateway.crypto.httpsig.prepare_request`'s and then the signature,
through the node's `Verifier` (which may run it in a process of its own); this module
adds the stateful parts: which keys are current (the directory) and which nonces
were seen. A nonce is claimed in memory before the request runs (so two copies
racing each other cannot both pass) and persisted in the same transaction as the
request's effect (`RequestAuth.persist`), so the cache survives a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.clock import Clock
from gateway.crypto.httpsig import prepare_request
from gateway.crypto.verifier import Verifier
from gateway.errors import ReplayedRequest, SignatureError, Unauthenticated
from gateway.services.directory import Directory
from gateway.storage import stores
from gateway.storage.database import Tx
from gateway.storage.records import OrgRecord

_KEYID = re.compile(r'keyid="([a-z][a-z0-9-]{1,62})/([0-9a-f]{32})"')


class ReplayCache:
    """(keyid, nonce) -> expiry in ms. In memory; the durable copy is the nonces table."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def load(self, entries: list[tuple[str, str, int]]) -> None:
        for keyid, nonce, expires in entries:
            self._seen[(keyid, nonce)] = expires

    def claim(self, keyid: str, nonce: str, now_ms: int, expires_ms: int) -> bool:
        key = (keyid, nonce)
        seen = self._seen.get(key)
        if seen is not None and seen > now_ms:
            return False
        self._seen[key] = expires_ms
        return True

    def prune(self, now_ms: int) -> int:
        stale = [k for k, exp in self._seen.items() if exp <= now_ms]
        for k in stale:
            del self._seen[k]
        return len(stale)


@dataclass(slots=True)
class RequestAuth:
    """The authenticated caller of one request, and whether its nonce is durable yet."""

    caller: OrgRecord
    keyid: str
    nonce: str
    nonce_expires_ms: int
    persisted: bool = field(default=False)
    # A streamed body (an attachment blob): the SHA-256 its signed Content-Digest
    # claims, which the body must hash to once it has been read.
    body_sha256: bytes | None = None

    @property
    def org(self) -> str:
        return self.caller.org

    def persist(self, tx: Tx) -> None:
        stores.insert_nonce(tx, self.keyid, self.nonce, self.nonce_expires_ms)
        # Only a committed insert counts: if the job rolls back (a 4xx raised inside
        # it), the middleware must write the nonce again, or the request could be
        # replayed after a restart.
        tx.on_commit(self._mark_persisted)

    def _mark_persisted(self) -> None:
        self.persisted = True


class Authenticator:
    def __init__(
        self,
        directory: Directory,
        replay: ReplayCache,
        clock: Clock,
        *,
        authority: str,
        skew_s: int = 300,
        window_s: int = 600,
        verifier: Verifier | None = None,
    ) -> None:
        self._verifier = verifier or Verifier()
        self._directory = directory
        self._replay = replay
        self._clock = clock
        self._authority = authority
        self._skew_s = skew_s
        self._window_s = window_s

    async def authenticate(
        self,
        *,
        method: str,
        path: str,
        query: str,
        body: bytes,
        signature_input: str | None,
        signature: str | None,
        content_digest: str | None,
        content_type: str | None,
        streamed: bool = False,
    ) -> RequestAuth:
        # Warm the directory for the named key first (it may have been added a moment
        # ago); the verifier itself then only reads the in-memory snapshot.
        match = _KEYID.search(signature_input or "")
        if match is not None:
            await self._directory.signing_key_or_reload(match.group(1), match.group(2))
        now_ms = self._clock.now_ms()
        try:
            prepared = prepare_request(
                method=method,
                authority=self._authority,
                path=path,
                query=query,
                body=body,
                signature_input=signature_input,
                signature=signature,
                content_digest=content_digest,
                content_type=content_type,
                now_s=now_ms // 1000,
                resolve_key=lambda org, kid: self._directory.signing_key(org, kid, now_ms),
                max_skew_s=self._skew_s,
                streamed=streamed,
            )
        except SignatureError as exc:
            raise Unauthenticated(exc.reason) from exc
        if not (await self._verifier.verify([prepared.signed]))[0]:
            raise Unauthenticated("signature invalid")
        verified = prepared.verified
        caller = self._directory.get(verified.org)
        if caller is None:  # removed between the two reads
            raise Unauthenticated("key vanished")
        expires = now_ms + self._window_s * 1000
        if not self._replay.claim(verified.keyid, verified.nonce, now_ms, expires):
            raise ReplayedRequest("This request was already received (nonce reused).")
        return RequestAuth(
            caller, verified.keyid, verified.nonce, expires, body_sha256=verified.body_sha256
        )
