"""Request authentication (PROTOCOL §2): signature, key validity and the replay cache.

The checks are `gateway.crypto.httpsig.prepare_request`'s and then the signature,
through the node's `Verifier` (which may run it in a process of its own); this module
adds the stateful parts: which keys are current (the directory) and which nonces
were seen. A nonce is claimed in memory before the request runs (so two copies
racing each other cannot both pass) and persisted in the same transaction as the
request's effect (`RequestAuth.persist`), so the cache survives a crash.

A route that checks envelope signatures may put the request signature off
(`authenticate(..., defer=True)`): it then goes to the verifier in the same call as
the envelopes' (`RequestAuth.verify_along`), one hand-over instead of two, and is
settled first, so its 401 still outranks anything the envelopes or the body say.
Until then the request is not authenticated: its nonce is not claimed, and a job that
persists it refuses to run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.clock import Clock
from gateway.crypto.httpsig import prepare_request
from gateway.crypto.verifier import Item, Verifier
from gateway.errors import ProblemError, ReplayedRequest, SignatureError, Unauthenticated
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
class _Deferred:
    """A request signature whose check was put off, and what settling it takes."""

    item: Item
    verifier: Verifier
    replay: ReplayCache
    now_ms: int
    error: ProblemError | None = None

    def settle(self, auth: RequestAuth, valid: bool) -> None:
        """The signature's result: claim the nonce, or keep the error (raised now and
        whenever the request asks again)."""
        if not valid:
            self.error = Unauthenticated("signature invalid")
        elif not self.replay.claim(auth.keyid, auth.nonce, self.now_ms, auth.nonce_expires_ms):
            self.error = ReplayedRequest("This request was already received (nonce reused).")
        else:
            auth.deferred = None
            return
        raise self.error


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
    # The request signature, while its check is put off (see the module's docstring).
    deferred: _Deferred | None = None

    @property
    def org(self) -> str:
        return self.caller.org

    @property
    def verified(self) -> bool:
        return self.deferred is None

    async def verify_along(self, verifier: Verifier, items: Sequence[Item]) -> list[bool]:
        """`items` verified; a put-off request signature goes in the same call and is
        settled first (Unauthenticated or ReplayedRequest outrank what `items` say)."""
        deferred = self.deferred
        if deferred is None:
            return await verifier.verify(items) if items else []
        if deferred.error is not None:
            raise deferred.error
        valid = await verifier.verify([deferred.item, *items])
        if deferred.error is not None:  # settled meanwhile, by another caller
            raise deferred.error
        if self.deferred is deferred:
            deferred.settle(self, valid[0])
        return valid[1:]

    async def confirm(self) -> None:
        """Settle a put-off request signature on its own (a route that verified no
        envelope, or failed before it did)."""
        if self.deferred is not None:
            await self.verify_along(self.deferred.verifier, [])

    def persist(self, tx: Tx) -> None:
        if self.deferred is not None:
            # A route put its signature check off and never made it: refuse the
            # write rather than act for an unauthenticated caller.
            raise RuntimeError("a request reached a write before its signature was checked")
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
        defer: bool = False,
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
        verified = prepared.verified
        caller = self._directory.get(verified.org)
        if caller is None:  # removed between the two reads
            raise Unauthenticated("key vanished")
        auth = RequestAuth(
            caller,
            verified.keyid,
            verified.nonce,
            now_ms + self._window_s * 1000,
            body_sha256=verified.body_sha256,
            deferred=_Deferred(prepared.signed, self._verifier, self._replay, now_ms),
        )
        if not defer:
            await auth.confirm()
        return auth
