"""Ed25519 verification beside the event loop: a verifier process per node.

A hub checks about five Ed25519 signatures per dat round trip (the request
signatures of PROTOCOL §2 and the outer envelope signatures of §4), and each takes
about 45 µs of libsodium on this machine. On the event loop, which shares one GIL
with the database thread, that was a fifth of all the hub's serial work, and a
burst of requests waited for every one of them in turn. `ProcessVerifier` hands
them to a child process instead (`python -m gateway.crypto.verifier`) over a pair
of pipes, so they run on another core while the loop goes on parsing the next
request. `Verifier` does the same checks on the calling thread; it is what a node
uses when `[hub] signature_verifier = "inline"`, and what a `ProcessVerifier` falls
back to while its child is down.

The child is the node's own code (same interpreter, same installed package) and
runs `gateway.crypto.keys.verify_ed25519`, so both give the same answer for every
input. It trusts nothing it reads: a malformed frame ends it, and the parent then
verifies what was in flight itself. It has no keys, no files and no network; it
ends when its stdin closes (the parent stopped or died).

On Linux the child runs under SCHED_BATCH: a task woken by a pipe write then does not
preempt the event loop that wrote it (it takes an idle core, or waits for the
loop's time slice to end). Every call wakes it, and on a busy machine each of those
preemptions cost the loop a context switch in the middle of a burst.

Wire format (all integers little-endian u32):
  parent -> child: batch_id, count, then per item: len(message), key (32), sig (64),
                   message
  child -> parent: one byte b"R" once ready, then per batch: batch_id, count, and
                   one byte per item (1 valid, 0 not)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import struct
import sys
import time
from collections.abc import Sequence
from typing import BinaryIO, cast

from gateway.crypto.keys import verify_ed25519

log = logging.getLogger(__name__)

Item = tuple[bytes, bytes, bytes]  # (public key, signature, message)

_HEAD = struct.Struct("<II")
_LEN = struct.Struct("<I")
_KEY_LEN, _SIG_LEN = 32, 64
_READY = b"R"


def _verify_items(items: Sequence[Item]) -> list[bool]:
    return [verify_ed25519(key, sig, message) for key, sig, message in items]


def _well_formed(item: Item) -> bool:
    key, sig, message = item
    return (
        isinstance(key, bytes)
        and isinstance(sig, bytes)
        and isinstance(message, bytes)
        and len(key) == _KEY_LEN
        and len(sig) == _SIG_LEN
    )


class Verifier:
    """Verifies on the calling thread."""

    @property
    def running(self) -> bool:
        """Whether a verifier process is serving (never, for this class)."""
        return False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def verify(self, items: Sequence[Item]) -> list[bool]:
        """One answer per item, in order: True iff it is a valid Ed25519 signature."""
        return _verify_items(items)


class _Pipes(asyncio.SubprocessProtocol):
    def __init__(self, owner: ProcessVerifier) -> None:
        self._owner = owner
        self._buffer = bytearray()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._buffer += data
            self._owner._received(self._buffer)

    def process_exited(self) -> None:
        self._owner._exited(self)


class ProcessVerifier(Verifier):
    """Verifies in a child process; falls back to the calling thread while it is down.

    Each call is one write to the child's stdin (a request's signature, its envelopes
    together, or an answer's envelope). If the child dies, everything in flight is verified
    here instead, and a new child is started on the next call at most every
    `restart_s`.
    """

    def __init__(self, *, restart_s: float = 5.0, start_timeout_s: float = 10.0) -> None:
        self._restart_s = restart_s
        self._start_timeout_s = start_timeout_s
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._pipes: _Pipes | None = None
        self._ready: asyncio.Future[None] | None = None
        self._pending: dict[int, tuple[asyncio.Future[list[bool]], Sequence[Item]]] = {}
        self._next_id = 0
        self._last_start = 0.0
        self._starting: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._stdin is not None

    async def start(self) -> None:
        self._stopped = False
        await self._spawn()

    async def _spawn(self) -> None:
        self._last_start = time.monotonic()
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        try:
            transport, pipes = await loop.subprocess_exec(
                lambda: _Pipes(self),
                sys.executable,
                "-m",
                "gateway.crypto.verifier",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,
            )
        except OSError as exc:
            log.warning("signature verifier not started", extra={"error": type(exc).__name__})
            return
        self._transport, self._pipes = transport, pipes
        try:
            await asyncio.wait_for(self._ready, self._start_timeout_s)
        except (TimeoutError, ConnectionError):
            self._kill()
            if not self._stopped:
                log.warning("signature verifier did not start; verifying inline")
            return
        except BaseException:  # cancelled (the node stops): no child left behind
            self._kill()
            raise
        # A write transport, though not always an asyncio.WriteTransport (uvloop's).
        self._stdin = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
        log.info("signature verifier started", extra={"pid": transport.get_pid()})

    async def stop(self) -> None:
        self._stopped = True
        if self._starting is not None:
            self._starting.cancel()
            self._starting = None
        stdin, self._stdin = self._stdin, None
        transport = self._transport
        self._fail_over()
        if transport is None:
            return
        if stdin is not None:
            stdin.close()  # the child ends at EOF
        try:
            for _ in range(200):
                if transport.get_returncode() is not None:
                    break
                await asyncio.sleep(0.01)
            else:
                transport.kill()
        finally:
            transport.close()
            self._transport = None

    async def verify(self, items: Sequence[Item]) -> list[bool]:
        if not items:
            return []
        if self._stdin is None:
            self._maybe_restart()
            return _verify_items(items)
        if not all(_well_formed(item) for item in items):
            # Never send what the child would have to refuse; these are all cheap.
            return _verify_items(items)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bool]] = loop.create_future()
        batch_id = self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        self._pending[batch_id] = (future, items)
        parts = [_HEAD.pack(batch_id, len(items))]
        for key, sig, message in items:
            parts += (_LEN.pack(len(message)), key, sig, message)
        # At once, not at the end of the loop's iteration: the child then verifies
        # while the loop parses the next requests of a burst (a lower p95 at 64).
        self._stdin.write(b"".join(parts))
        return await future

    def _received(self, buffer: bytearray) -> None:
        if self._ready is not None and not self._ready.done():
            if buffer[:1] != _READY:
                self._kill()
                return
            del buffer[:1]
            self._ready.set_result(None)
        while len(buffer) >= _HEAD.size:
            batch_id, count = _HEAD.unpack_from(buffer)
            end = _HEAD.size + count
            if len(buffer) < end:
                return
            answers = [b == 1 for b in buffer[_HEAD.size : end]]
            del buffer[:end]
            entry = self._pending.get(batch_id)
            if entry is None or len(entry[1]) != count:
                log.error("signature verifier answered out of turn; restarting it")
                self._kill()  # everything in flight is verified here instead
                return
            future, _ = self._pending.pop(batch_id)
            if not future.done():
                future.set_result(answers)

    def _exited(self, pipes: _Pipes) -> None:
        if pipes is not self._pipes:
            return
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ConnectionError("verifier exited"))
            self._ready.exception()  # retrieved: _spawn reports it
        if not self._stopped and self._stdin is not None:
            log.warning("signature verifier exited; verifying inline until it is back")
        self._stdin = None
        self._pipes = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._fail_over()

    def _kill(self) -> None:
        self._stdin = None
        if self._transport is not None:
            with contextlib.suppress(ProcessLookupError):
                self._transport.kill()
        self._fail_over()

    def _fail_over(self) -> None:
        """Answer everything in flight here, so that no caller waits for a dead child."""
        pending, self._pending = self._pending, {}
        for future, items in pending.values():
            if not future.done():
                future.set_result(_verify_items(items))

    def _maybe_restart(self) -> None:
        if self._stopped or self._starting is not None:
            return
        if time.monotonic() - self._last_start < self._restart_s:
            return
        self._starting = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        try:
            await self._spawn()
        finally:
            self._starting = None


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """The child: answer batches from `source` on `sink` until `source` ends."""
    sink.write(_READY)
    sink.flush()
    read = source.read
    while True:
        head = read(_HEAD.size)
        if len(head) < _HEAD.size:
            return  # EOF: the parent closed the pipe or is gone
        batch_id, count = _HEAD.unpack(head)
        answers = bytearray(count)
        for i in range(count):
            size_bytes = read(_LEN.size)
            if len(size_bytes) < _LEN.size:
                return
            (size,) = _LEN.unpack(size_bytes)
            key, sig, message = read(_KEY_LEN), read(_SIG_LEN), read(size)
            if len(message) < size or len(sig) < _SIG_LEN or len(key) < _KEY_LEN:
                return
            answers[i] = verify_ed25519(key, sig, message)
        sink.write(_HEAD.pack(batch_id, count) + bytes(answers))
        sink.flush()


def batch_scheduling() -> None:
    """SCHED_BATCH for this process where the OS has it (see the module's docstring);
    no privilege is needed to move to it from the normal policy."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main() -> None:
    # Ctrl-C reaches the whole process group, and a service manager's SIGTERM the
    # whole cgroup: the parent decides when this ends (it closes stdin, or dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    batch_scheduling()
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
