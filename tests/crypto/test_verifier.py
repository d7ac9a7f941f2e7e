"""The verifier process (gateway.crypto.verifier): the same answers as verifying
inline, for every batch and caller, also while its child is killed and restarted."""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from gateway.crypto.keys import OrgKeys, verify_ed25519
from gateway.crypto.verifier import Item, ProcessVerifier, Verifier, serve

KEYS = OrgKeys.generate("verifier-test")
OTHER = OrgKeys.generate("verifier-other")


def items(count: int, seed: int) -> list[Item]:
    """Valid signatures and every kind of invalid one, mixed."""
    rng = random.Random(seed)
    out: list[Item] = []
    for i in range(count):
        message = rng.randbytes(rng.randrange(0, 3000))
        sig = KEYS.sign(message)
        key = KEYS.signing_key
        match i % 6:
            case 1:  # a flipped bit of the signature
                j = rng.randrange(64)
                sig = sig[:j] + bytes([sig[j] ^ 1]) + sig[j + 1 :]
            case 2:  # another key
                key = OTHER.signing_key
            case 3:  # another message
                message += b"!"
            case 4:  # wrong lengths never reach libsodium
                sig = sig[:63]
            case _:
                pass
        out.append((key, sig, message))
    return out


def expected(batch: list[Item]) -> list[bool]:
    return [verify_ed25519(key, sig, message) for key, sig, message in batch]


@pytest.fixture
async def process_verifier() -> AsyncIterator[ProcessVerifier]:
    verifier = ProcessVerifier(restart_s=0.0)
    await verifier.start()
    assert verifier.running
    yield verifier
    await verifier.stop()


async def test_answers_as_inline_verification(process_verifier: ProcessVerifier) -> None:
    batch = items(120, seed=1)
    want = expected(batch)
    assert True in want
    assert False in want
    assert await process_verifier.verify(batch) == want
    assert await Verifier().verify(batch) == want
    assert await process_verifier.verify([]) == []


async def test_concurrent_callers_get_their_own_answers(
    process_verifier: ProcessVerifier,
) -> None:
    batches = [items(random.Random(n).randrange(1, 9), seed=n) for n in range(200)]
    answers = await asyncio.gather(*(process_verifier.verify(b) for b in batches))
    assert answers == [expected(b) for b in batches]


async def test_a_killed_child_is_replaced_and_nothing_waits(
    process_verifier: ProcessVerifier,
) -> None:
    batch = items(30, seed=2)
    in_flight = [asyncio.ensure_future(process_verifier.verify(batch)) for _ in range(5)]
    await asyncio.sleep(0)  # queued for the child
    transport = process_verifier._transport
    assert transport is not None
    transport.kill()
    assert await asyncio.gather(*in_flight) == [expected(batch)] * 5
    for _ in range(500):  # until the exit is noticed
        if not process_verifier.running:
            break
        await asyncio.sleep(0.01)
    assert await process_verifier.verify(batch) == expected(batch)  # inline; restarts
    for _ in range(500):
        if process_verifier.running:
            break
        await asyncio.sleep(0.01)
    assert process_verifier.running
    assert await process_verifier.verify(batch) == expected(batch)


async def test_stop_ends_the_child(process_verifier: ProcessVerifier) -> None:
    transport = process_verifier._transport
    assert transport is not None
    await process_verifier.stop()
    assert transport.get_returncode() == 0
    assert not process_verifier.running
    batch = items(6, seed=3)
    assert await process_verifier.verify(batch) == expected(batch)  # inline, no restart
    assert not process_verifier.running


async def test_a_child_that_cannot_start_leaves_verification_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    verifier = ProcessVerifier(start_timeout_s=5.0)
    await verifier.start()
    try:
        assert not verifier.running
        batch = items(12, seed=4)
        assert await verifier.verify(batch) == expected(batch)
    finally:
        await verifier.stop()


def frame(batch_id: int, batch: list[Item]) -> bytes:
    out = struct.pack("<II", batch_id, len(batch))
    for key, sig, message in batch:
        out += struct.pack("<I", len(message)) + key + sig + message
    return out


def test_the_child_side_answers_frames_and_ends_at_eof() -> None:
    first, second = items(7, seed=5), [item for item in items(12, seed=6) if len(item[1]) == 64]
    sink = io.BytesIO()
    serve(
        io.BytesIO(
            frame(7, first[:0]) + frame(8, [i for i in first if len(i[1]) == 64]) + frame(9, second)
        ),
        sink,
    )
    out = sink.getvalue()
    assert out[:1] == b"R"
    out = out[1:]
    for batch_id, batch in ((7, []), (8, [i for i in first if len(i[1]) == 64]), (9, second)):
        got_id, count = struct.unpack_from("<II", out)
        assert (got_id, count) == (batch_id, len(batch))
        assert [b == 1 for b in out[8 : 8 + count]] == expected(batch)
        out = out[8 + count :]
    assert out == b""


def test_the_child_side_stops_at_a_truncated_frame() -> None:
    whole = frame(1, items(3, seed=7)[:1])
    sink = io.BytesIO()
    serve(io.BytesIO(whole[:-1]), sink)
    assert sink.getvalue() == b"R"  # no answer for half a frame


def test_the_module_runs_as_a_program() -> None:
    """`python -m gateway.crypto.verifier`, as the node starts it."""
    batch = [item for item in items(8, seed=8) if len(item[1]) == 64]
    done = subprocess.run(
        [sys.executable, "-m", "gateway.crypto.verifier"],
        input=frame(3, batch),
        capture_output=True,
        check=True,
        timeout=60,
        env={**os.environ},
    )
    assert done.stdout[:1] == b"R"
    assert [b == 1 for b in done.stdout[9:]] == expected(batch)


async def test_the_child_outlives_a_sigterm_to_its_group(
    process_verifier: ProcessVerifier,
) -> None:
    """A service manager signals every process of the unit at a stop; the child waits
    for its parent to close the pipe, so nothing falls back to inline meanwhile."""
    transport = process_verifier._transport
    assert transport is not None
    os.kill(transport.get_pid(), signal.SIGTERM)
    os.kill(transport.get_pid(), signal.SIGINT)
    await asyncio.sleep(0.2)
    assert process_verifier.running
    batch = items(6, seed=9)
    assert await process_verifier.verify(batch) == expected(batch)


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling policies")
async def test_the_child_runs_under_batch_scheduling(process_verifier: ProcessVerifier) -> None:
    """Its wake-ups do not preempt the event loop that wrote to it."""
    transport = process_verifier._transport
    assert transport is not None
    assert os.sched_getscheduler(transport.get_pid()) == os.SCHED_BATCH
    assert os.sched_getscheduler(0) != os.SCHED_BATCH  # the node itself is not
