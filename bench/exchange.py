"""Benchmark of the dat round trip through a real hub process.

    .venv/bin/python bench/exchange.py [--seconds N] [--warmup W] [--concurrency 1,16,64]
                                       [--profile | --profile-threads] [--profile-out FILE]
                                       [--keep] [--answers single|batch] [--wire]

Creates a fresh hub with the CLI in a temporary folder (its own SQLite file), runs it
with `python -m gateway serve` (under cProfile with `--profile`), and runs the
partners as separate processes of this same script:

- one requester process (the region's ZVH): C concurrent tasks, each in a loop
  seals a dat-request to two recipients, POSTs it and waits until both answers are in
  its inbox and acked (the *round-trip latency* is from just before the POST until
  both answers were received); a dedicated task long-polls the requester's inbox,
  matches answers by exchange_id and batch-acks them. The *ack latency* is the POST's
  response time from the moment its bytes were written to the socket (see
  WireTimedRequest: on Python 3.11 aiohttp writes the body from a task that waits its
  turn in the requester's own busy event loop); the time from the call, which adds
  that wait, is printed next to it, with the requester's event-loop lag;
- one responder process per recipient: long-polls (limit 100), opens each request,
  answers it with a sealed contact route and batch-acks. With `--answers single` (the
  default) each answer is its own request to `POST /api/v1/exchanges/{id}/answers`
  (all answers of a fetched batch concurrently); with `--answers batch` the fetched
  batch is answered in one `POST /api/v1/answers` (an extension, docs/protocol.md).

A round trip is therefore fully durable: request, two answers and three acks. For
each concurrency level the requester runs a warm-up, then a measured window, and
reads the hub's CPU time (utime + stime from /proc/<pid>/stat) and RSS (VmRSS from
/proc/<pid>/status), its signature verifier process's included, at the window's
ends, and the hub's own /metrics (group commits, write jobs and requests per round
trip). Not a test: it prints a table.

Two lines explain the ack tail. *Bursts*: the closed loop synchronises itself (a
responder answers a fetched batch at once, the requester's inbox returns those answers
at once, and the freed requesters all send their next request at once), so at 64 most
dat-requests reach the hub within 2 ms of 20-40 others, and a burst's acks come back
together, after the hub has worked through the whole burst; the ack percentiles are
printed per burst size. *Run queue*: how long each process's threads were runnable but
waited for one of the two cores (/proc/<pid>/task/*/schedstat).

`--wire` (root) also times every dat-request's ack on the loopback interface, with the
kernel's timestamps (bench/wire.py): the hub's own latency, whatever the requester's
event loop adds when it comes round to a response late.

`--profile` runs the hub as `python -m cProfile -o FILE -m gateway serve ...` and
stops it with SIGINT, so that cProfile writes FILE; that profiles the event loop's
thread only, where the SQLite work is invisible (it runs on aiosqlite's threads).
`--profile-threads` runs `gateway.cli.main(["serve", ...])` in this script with a
cProfile profiler in every thread, and prints each thread's top functions too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import cProfile
import json
import marshal
import math
import os
import pstats
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import aiohttp
from procs import REPO, add_partner, cli, free_port, stop_process, wait_ready
from wire import capture, read_capture

from gateway import cli as gateway_cli
from gateway.adapters.client import HubClient, HubError, Reply
from gateway.crypto.keys import OrgKeys

HUB_ORG = "hub-bench"
REQUESTER = "zvh-bench"
RESPONDERS = ("ggz-bench", "politie-bench")  # sorted: the hub lists recipients sorted
PARTNERS = (
    (REQUESTER, "zvh", "bestuur"),
    ("politie-bench", "partner", "straf"),
    ("ggz-bench", "partner", "zorg"),
)
CASE_REF = "ZVH-BENCH-0001"
SUBJECT = "S1"
# Synthetic person (the BSN passes the 11-test but belongs to nobody).
PERSON = {"bsn": "230857103", "name": "Barend Testmans", "birth_date": "1980-02-03"}
TARGET_RT_PER_S = 300.0  # at concurrency 64
TARGET_ACK_P99_MS = 50.0
TARGET_CPU_MS_PER_RT = 2.5
RT_TIMEOUT_S = 30.0
# Requests whose bytes went out less than this apart count as one burst (see bursts).
BURST_GAP_S = 0.002
BURST_BANDS = ((1, 7), (8, 15), (16, 23), (24, 10**6))
LAG_TICK_S = 0.005
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc -------------------------------------------------------------------------


def family(pid: int) -> list[int]:
    """The process and its descendants (a hub's signature verifier process): a node's
    CPU time, run-queue waits and RSS are those of all of them."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            for child in (task / "children").read_text().split():
                found += family(int(child))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its descendants (all threads), in seconds."""
    total = 0
    for member in family(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (all cores, /proc/stat), in seconds."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def speed_probe_ms() -> float:
    """A fixed pure-Python loop on an otherwise idle machine, best of three, in ms.

    This VM's speed drifts (by 30% or more within an hour): the same code gave
    340 and 480 round trips/s. The probe, printed before and after a run, says which
    phase a run was measured in, so that runs can be compared."""
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return best * 1000


def run_queue_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a core (the second
    field of /proc/<pid>/task/<tid>/schedstat, in ns; threads that ended are not
    counted), in seconds. 0 where the kernel keeps no schedstats."""
    total = 0
    for member in family(pid):
        for task in Path(f"/proc/{member}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def bursts(on_wire_and_ack: Sequence[tuple[float, float]], gap_s: float) -> dict[str, Any]:
    """How the dat-requests reached the hub: a burst is a run of requests whose bytes
    went out less than `gap_s` after the previous one's. Gives the burst size that the
    median (and the 90th-percentile) request was part of, and the ack p50/p99 (ms) of
    the requests in bursts of each size band."""
    ordered = sorted(on_wire_and_ack)
    groups: list[list[float]] = []
    last = -math.inf
    for on_wire, ack_ms in ordered:
        if on_wire - last > gap_s:
            groups.append([])
        groups[-1].append(ack_ms)
        last = on_wire
    sizes = sorted(len(g) for g in groups for _ in g)  # one entry per request
    bands: dict[str, list[float]] = {}
    for low, high in BURST_BANDS:
        acks = sorted(a for g in groups if low <= len(g) <= high for a in g)
        if acks:
            name = f"{low}-{high}" if high < 10**6 else f">={low}"
            bands[name] = [len(acks), percentile(acks, 50), percentile(acks, 99)]
    return {
        "size_p50": percentile(sizes, 50),
        "size_p90": percentile(sizes, 90),
        "by_size": bands,
    }


def rss_mb(pid: int) -> float:
    """VmRSS of the process and its descendants."""
    total = 0
    for member in family(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024 if total else math.nan


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value} (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def label(key: str, name: str) -> str | None:
    """The value of label `name` in a 'metric{a="x",b="y"}' key."""
    marker = f'{name}="'
    if marker not in key:
        return None
    return key.split(marker, 1)[1].split('"', 1)[0]


def _bucket(route: str, le: str) -> str:
    return (
        f'zvh_gateway_http_request_duration_seconds_bucket{{le="{le}",method="POST",'
        f'route="{route}"}}'
    )


def internals(
    before: dict[str, float], after: dict[str, float], window: float, rts: int
) -> dict[str, Any]:
    """What the hub's own metrics say about the window: group commits and work per round trip."""

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    commits = delta("zvh_gateway_storage_batch_jobs_count")
    jobs = delta("zvh_gateway_storage_batch_jobs_sum")
    commit_s = delta("zvh_gateway_storage_batch_duration_seconds_sum")
    per_rt = max(rts, 1)
    writes: dict[str, float] = {}
    requests: dict[str, float] = {}
    job_ms: dict[str, float] = {}
    hub_ms: dict[str, float] = {}  # mean time inside the hub, by step
    for key in after:
        if key.startswith(
            (
                "zvh_gateway_http_request_duration_seconds_count{",
                "zvh_gateway_storage_transaction_duration_seconds_count{",
            )
        ):
            step = label(key, "route") or f"queue+commit {label(key, 'name')}"
            count = delta(key)
            if count and ("dat" in step or "answer" in step):
                hub_ms[step] = delta(key.replace("_count{", "_sum{")) * 1000 / count
        if key.startswith("zvh_gateway_storage_job_run_seconds_count{"):
            job = label(key, "name")
            count = delta(key)
            if job and count:
                job_ms[job] = delta(key.replace("_count{", "_sum{")) * 1000 / count
        if key.startswith("zvh_gateway_storage_transaction_duration_seconds_count{"):
            name = label(key, "name")
            if name and name not in ("inbox_fetch", "inbox_backlog"):
                writes[name] = writes.get(name, 0.0) + delta(key) / per_rt
        elif key.startswith("zvh_gateway_http_requests_total{"):
            route = f"{label(key, 'method')} {label(key, 'route')}"
            requests[route] = requests.get(route, 0.0) + delta(key) / per_rt
    return {
        "commits_per_s": commits / window,
        "jobs_per_commit": jobs / commits if commits else math.nan,
        "commit_ms": commit_s * 1000 / commits if commits else math.nan,
        "db_writer_busy_percent": commit_s * 100 / window,
        "writes_per_rt": {k: round(v, 2) for k, v in sorted(writes.items()) if v >= 0.005},
        "requests_per_rt": {k: round(v, 2) for k, v in sorted(requests.items()) if v >= 0.005},
        "job_ms": {k: round(v, 3) for k, v in sorted(job_ms.items())},
        "hub_ms": {k: round(v, 1) for k, v in sorted(hub_ms.items())},
        "loop_lag_ms": 1000
        * delta("zvh_gateway_event_loop_lag_seconds_sum")
        / max(delta("zvh_gateway_event_loop_lag_seconds_count"), 1),
        "loop_lag_over_10ms": 100
        * (
            1
            - delta('zvh_gateway_event_loop_lag_seconds_bucket{le="0.01"}')
            / max(delta('zvh_gateway_event_loop_lag_seconds_bucket{le="+Inf"}'), 1)
        ),
        "dat_over_ms": {
            bound: 100
            * (
                1
                - delta(_bucket("/api/v1/dat-requests", le))
                / max(delta(_bucket("/api/v1/dat-requests", "+Inf")), 1)
            )
            for bound, le in ((25, "0.025"), (50, "0.05"))
        },
        "commit_only_ms": (
            delta("zvh_gateway_storage_commit_seconds_sum")
            * 1000
            / max(delta("zvh_gateway_storage_commit_seconds_count"), 1)
        ),
    }


# -- the requester process ------------------------------------------------------------


# Where the requester's ClientRequest notes when a request's bytes went out (see below).
_ON_WIRE: contextvars.ContextVar[list[float]] = contextvars.ContextVar("on_wire")


class WireTimedRequest(aiohttp.ClientRequest):
    """Notes the moment the request is written to the socket.

    On Python 3.11, aiohttp writes a request body from a task of its own, which starts
    only when this process's event loop comes round to it: behind every other
    requester's sealing and answer-opening. That wait is the requester's, not the hub's,
    so the ack latency is timed from here (the task runs in the caller's context, so it
    finds the caller's note). The time from the call is reported too.
    """

    async def write_bytes(
        self,
        writer: Any,
        conn: Any,
        content_length: int | None = None,
    ) -> None:
        note = _ON_WIRE.get(None)
        if note is not None and not note:
            note.append(time.perf_counter())
        await super().write_bytes(writer, conn, content_length)


@dataclass
class Pending:
    done: asyncio.Future[float]  # set to the time both answers were received, after the ack
    answers: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Sample:
    sent: float  # just before the POST
    on_wire: float  # its bytes were written to the socket
    acked: float  # the POST's 202 arrived
    received: float  # both answers fetched by the requester
    done: float  # ... and acked


async def run_requester(spec: dict[str, Any]) -> None:
    recipients: list[str] = spec["recipients"]
    watched: dict[str, int] = spec["pids"]  # name -> pid, for CPU and RSS
    watched["requester"] = os.getpid()
    keys = OrgKeys.load(spec["key_file"])
    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=RT_TIMEOUT_S + 10),
        request_class=WireTimedRequest,
    )
    client = HubClient(spec["url"], keys, session=session)
    loop = asyncio.get_running_loop()
    pending: dict[str, Pending] = {}
    stop_polling = asyncio.Event()
    background: set[asyncio.Task[None]] = set()
    poll_errors = 0

    await client.register_case(
        CASE_REF, "huiselijk-geweld", [(SUBJECT, secrets.token_hex(64))], recipients
    )
    await client.directory()

    async def ack_then_complete(ids: list[int], complete: list[tuple[Pending, float]]) -> None:
        try:
            await client.ack(ids)
        except Exception as exc:
            for p, _ in complete:
                if not p.done.done():
                    p.done.set_exception(exc)
            return
        for p, received in complete:
            if not p.done.done():
                p.done.set_result(received)

    async def poll_inbox() -> None:
        nonlocal poll_errors
        while not stop_polling.is_set():
            try:
                messages = await client.fetch(wait=1, limit=100)
            except (aiohttp.ClientError, TimeoutError, HubError):
                poll_errors += 1
                await asyncio.sleep(0.1)
                continue
            now = time.perf_counter()
            complete = []
            for m in messages:
                p = pending.get(m.exchange_id or "")
                if p is None or m.kind != "dat-answer":
                    continue
                p.answers.add(m.sender)
                if len(p.answers) == len(recipients):
                    complete.append((p, now))
            if messages:
                task = asyncio.create_task(
                    ack_then_complete([m.message_id for m in messages], complete)
                )
                background.add(task)
                task.add_done_callback(background.discard)

    poller = asyncio.create_task(poll_inbox())

    async def level_run(concurrency: int, warmup: float, seconds: float) -> dict[str, Any]:
        samples: list[Sample] = []
        errors: dict[str, int] = {}
        stop = asyncio.Event()

        def error(kind: str) -> None:
            errors[kind] = errors.get(kind, 0) + 1

        async def worker() -> None:
            while not stop.is_set():
                xid = str(uuid.uuid4())
                envelopes = [
                    await client.seal_to(
                        org,
                        kind="dat-request",
                        exchange_id=xid,
                        case_ref=CASE_REF,
                        subject_ref=SUBJECT,
                        body=PERSON,
                    )
                    for org in recipients
                ]
                body = {"case_ref": CASE_REF, "subject_ref": SUBJECT, "envelopes": envelopes}
                p = Pending(loop.create_future())
                pending[xid] = p
                note: list[float] = []
                _ON_WIRE.set(note)
                sent = time.perf_counter()
                try:
                    await client.call("POST", "/api/v1/dat-requests", body=body)
                    acked = time.perf_counter()
                    on_wire = note[0] if note else sent
                    received = await asyncio.wait_for(p.done, RT_TIMEOUT_S)
                except HubError as exc:
                    error(exc.code)
                    continue
                except TimeoutError:
                    error("timeout")
                    continue
                except aiohttp.ClientError as exc:
                    error(type(exc).__name__)
                    await asyncio.sleep(0.1)
                    continue
                finally:
                    pending.pop(xid, None)
                samples.append(Sample(sent, on_wire, acked, received, time.perf_counter()))

        async def scrape() -> dict[str, float]:
            async with session.get(spec["metrics_url"]) as resp:
                return parse_metrics(await resp.text())

        lags: list[float] = []

        async def lag_probe() -> None:
            # This process's own event-loop lag: how late a ready task runs here.
            while not stop.is_set():
                t = time.perf_counter()
                await asyncio.sleep(LAG_TICK_S)
                lags.append((time.perf_counter() - t - LAG_TICK_S) * 1000)

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        tasks.append(asyncio.create_task(lag_probe()))
        await asyncio.sleep(warmup)
        metrics0 = await scrape()
        start = time.perf_counter()
        wall_start = time.time()  # the wire capture's clock
        cpu0 = {name: cpu_seconds(pid) for name, pid in watched.items()}
        cpu0["machine"] = machine_cpu_seconds()
        waited0 = {name: run_queue_seconds(pid) for name, pid in watched.items()}
        rss_peak = 0.0
        while (left := start + seconds - time.perf_counter()) > 0:
            await asyncio.sleep(min(1.0, left))
            rss_peak = max(rss_peak, rss_mb(watched["hub"]))
        end = time.perf_counter()
        wall_end = time.time()
        cpu1 = {name: cpu_seconds(pid) for name, pid in watched.items()}
        cpu1["machine"] = machine_cpu_seconds()
        waited1 = {name: run_queue_seconds(pid) for name, pid in watched.items()}
        metrics1 = await scrape()
        rss_end = rss_mb(watched["hub"])
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), RT_TIMEOUT_S + 15)

        window = end - start
        done = [s for s in samples if start <= s.done < end]
        acks = [s for s in samples if start <= s.acked < end]
        ack_ms = sorted((s.acked - s.on_wire) * 1000 for s in acks)
        call_ms = sorted((s.acked - s.sent) * 1000 for s in acks)
        arrivals = [(s.on_wire, (s.acked - s.on_wire) * 1000) for s in acks]
        send_ms = sorted((s.on_wire - s.sent) * 1000 for s in acks)
        rt_ms = sorted((s.received - s.sent) * 1000 for s in done)
        hub_cpu_s = cpu1["hub"] - cpu0["hub"]
        return {
            "concurrency": concurrency,
            "window_s": window,
            "window_wall": [wall_start, wall_end],
            "round_trips": len(done),
            "rt_per_s": len(done) / window,
            "ack_ms": [percentile(ack_ms, p) for p in (50, 95, 99)],
            "call_ms": [percentile(call_ms, p) for p in (50, 95, 99)],
            "send_ms": [percentile(send_ms, p) for p in (50, 95, 99)],
            "requester_lag_ms": [percentile(sorted(lags), p) for p in (50, 95, 99)],
            "rt_ms": [percentile(rt_ms, p) for p in (50, 95, 99)],
            "hub_cpu_ms_per_rt": hub_cpu_s * 1000 / len(done) if done else math.nan,
            "cpu_percent": {n: (cpu1[n] - cpu0[n]) * 100 / window for n in cpu0},
            "run_queue_percent": {n: (waited1[n] - waited0[n]) * 100 / window for n in waited0},
            "bursts": bursts(arrivals, BURST_GAP_S),
            "hub_rss_mb": rss_end,
            "hub_rss_peak_mb": rss_peak,
            "errors": errors,
            "hub": internals(metrics0, metrics1, window, len(done)),
        }

    try:
        for concurrency in spec["levels"]:
            print(f"# concurrency {concurrency}: warm-up and measuring", flush=True)
            result = await level_run(concurrency, spec["warmup"], spec["seconds"])
            print(json.dumps(result), flush=True)
            await asyncio.sleep(0.5)  # let the previous level's last acks settle
    finally:
        stop_polling.set()
        await asyncio.wait_for(poller, 10)
        if background:
            await asyncio.wait(background, timeout=10)
        await client.close()
        await session.close()
    if poll_errors:
        print(f"# requester inbox poll errors: {poll_errors}", flush=True)


# -- a responder process ---------------------------------------------------------------


async def run_responder(spec: dict[str, Any]) -> None:
    keys = OrgKeys.load(spec["key_file"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    )
    client = HubClient(spec["url"], keys, session=session)
    stats = {"answered": 0, "acked": 0, "fetches": 0, "errors": 0}
    background: set[asyncio.Task[None]] = set()
    contact = f"{keys.org}: dienstdoende casemanager, 0800-0000"

    async def ack(ids: list[int]) -> None:
        try:
            stats["acked"] += len(await client.ack(ids))
        except (aiohttp.ClientError, TimeoutError, HubError):
            stats["errors"] += 1

    while not stop.is_set():
        try:
            messages = await client.fetch(wait=1, limit=100)
        except (aiohttp.ClientError, TimeoutError, HubError):
            stats["errors"] += 1
            await asyncio.sleep(0.1)
            continue
        stats["fetches"] += 1
        if not messages:
            continue
        requests = [m for m in messages if m.kind == "dat-request"]
        if spec.get("batch"):
            try:
                results = await client.answer_many(
                    [Reply(m, "known", {"contact": contact}) for m in requests]
                )
            except (aiohttp.ClientError, TimeoutError, HubError):
                stats["errors"] += len(requests)
            else:
                ok = sum(r["status"] == 202 for r in results)
                stats["answered"] += ok
                stats["errors"] += len(results) - ok
        else:
            singles = await asyncio.gather(
                *(client.answer(m, "known", {"contact": contact}) for m in requests),
                return_exceptions=True,
            )
            failed = sum(isinstance(r, BaseException) for r in singles)
            stats["errors"] += failed
            stats["answered"] += len(singles) - failed
        # Batch-ack in the background, so that the next long-poll starts at once
        # (the fetched messages stay leased meanwhile).
        task = asyncio.create_task(ack([m.message_id for m in messages]))
        background.add(task)
        task.add_done_callback(background.discard)
    if background:
        await asyncio.wait(background, timeout=10)
    await client.close()
    await session.close()
    print(json.dumps({"org": keys.org, **stats}), flush=True)


# -- the hub, profiled in every thread ---------------------------------------------------


def run_hub_profiled(out: str, argv: list[str]) -> int:
    """`zvh-gateway serve` with one cProfile profiler per thread. Writes OUT.main and
    OUT.thread-N (pstats files; threads numbered in the order they started)."""
    profiles: list[tuple[str, cProfile.Profile]] = []

    def start_in_thread(frame: FrameType, event: str, arg: Any) -> None:
        # The first profile event of a new thread: give it its own profiler (enabling it
        # replaces this hook for that thread).
        prof = cProfile.Profile()
        profiles.append((threading.current_thread().name, prof))
        prof.enable()

    threading.setprofile(start_in_thread)
    main = cProfile.Profile()
    main.enable()
    try:
        return gateway_cli.main(argv)
    finally:
        main.disable()
        main.dump_stats(f"{out}.main")
        for i, (name, prof) in enumerate(profiles):
            prof.snapshot_stats()  # its thread has ended; do not disable from this one
            with open(f"{out}.thread-{i}", "wb") as f:
                marshal.dump(prof.stats, f)
            print(f"thread-{i}: {name}", file=sys.stderr)


# -- the orchestrator ---------------------------------------------------------------------


def setup_hub(base: Path, port: int, metrics_port: int) -> tuple[Path, dict[str, Path]]:
    hub_dir, keys_dir = base / "hub", base / "partner-keys"
    cli(
        "init-hub",
        "--dir",
        str(hub_dir),
        "--org",
        HUB_ORG,
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
    )
    config = hub_dir / "hub.toml"
    protocol = base / "protocol.txt"
    protocol.write_text("Privacyprotocol Benchregio, versie 1.\n", encoding="utf-8")
    publish = ["--config", str(config), "--file", str(protocol), "--themes", "huiselijk-geweld"]
    cli("protocol", "publish", *publish)
    key_files = {}
    for org, role, domain in PARTNERS:
        key_files[org] = add_partner(config, keys_dir, org, role, domain)
    return config, key_files


async def accede_all(url: str, key_files: dict[str, Path]) -> None:
    """Each member signs its accession to the region's privacy protocol."""
    for key_file in key_files.values():
        async with HubClient(url, OrgKeys.load(key_file)) as client:
            await client.accede()


def fmt(values: Sequence[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def print_table(results: list[dict[str, Any]], profiled: bool) -> None:
    head = (
        f"{'conc':>4}  {'rt/s':>7}  {'ack p50/p95/p99 ms':>19}  {'rt p50/p95/p99 ms':>20}  "
        f"{'hub CPU ms/rt':>13}  {'hub RSS MB':>10}  {'CPU % hub/req/resp/other':>24}  errors"
    )
    print()
    if profiled:
        print("(the hub ran under cProfile: absolute figures are slower than without it)")
    print(head)
    print("-" * len(head))
    for r in results:
        cpu = r["cpu_percent"]
        resp = sum(v for k, v in cpu.items() if k not in ("hub", "requester", "machine"))
        other = max(0.0, cpu["machine"] - cpu["hub"] - cpu["requester"] - resp)
        print(
            f"{r['concurrency']:>4}  {r['rt_per_s']:>7.1f}  {fmt(r['ack_ms']):>19}  "
            f"{fmt(r['rt_ms']):>20}  {r['hub_cpu_ms_per_rt']:>13.2f}  "
            f"{r['hub_rss_mb']:>10.1f}  "
            f"{cpu['hub']:>9.0f}/{cpu['requester']:>4.0f}/{resp:>4.0f}/{other:>4.0f}  "
            f"{json.dumps(r['errors']) if r['errors'] else '-'}"
        )
    print(
        f"{'target':>4}  {'>=' + str(int(TARGET_RT_PER_S)) + '@64':>7}  "
        f"{'p99 < ' + str(int(TARGET_ACK_P99_MS)):>19}  {'':>20}  "
        f"{'<= ' + str(TARGET_CPU_MS_PER_RT):>13}"
    )
    print()
    for r in results:
        checks = [
            (
                "ack p99",
                r["ack_ms"][2] < TARGET_ACK_P99_MS,
                f"{r['ack_ms'][2]:.1f} ms",
            ),
            (
                "hub CPU/rt",
                r["hub_cpu_ms_per_rt"] <= TARGET_CPU_MS_PER_RT,
                f"{r['hub_cpu_ms_per_rt']:.2f} ms",
            ),
        ]
        if r["concurrency"] == 64:
            checks.insert(0, ("rt/s", r["rt_per_s"] >= TARGET_RT_PER_S, f"{r['rt_per_s']:.0f}"))
        verdict = ", ".join(f"{n} {v} {'ok' if ok else 'MISSED'}" for n, ok, v in checks)
        print(f"  concurrency {r['concurrency']:>3}: {verdict}")
    print(
        "\nthe requester's side (ack above = from the request's bytes on the wire to the"
        " 2xx; from the call = from just before HubClient.call, which adds the wait for"
        " this process's event loop to write them):"
    )
    for r in results:
        print(
            f"  concurrency {r['concurrency']:>3}: ack from the call p50/p95/p99"
            f" {fmt(r['call_ms'])} ms; call to wire {fmt(r['send_ms'])} ms;"
            f" requester event-loop lag {fmt(r['requester_lag_ms'])} ms"
        )
        if "wire_ack_ms" in r:
            print(
                "      on the wire (the loopback interface's kernel timestamps, from a"
                " dat-request's last packet to its response's first):"
                + (
                    f" ack p50/p95/p99 {fmt(r['wire_ack_ms'])} ms over {r['wire_acks']}"
                    if r["wire_acks"]
                    else f" nothing captured {r['wire_note']}"
                )
            )
        b = r["bursts"]
        bands = "; ".join(
            f"{name}: {n} requests, ack p50/p99 {p50:.1f}/{p99:.1f} ms"
            for name, (n, p50, p99) in b["by_size"].items()
        )
        print(
            f"      dat-requests reach the hub in bursts (< {BURST_GAP_S * 1000:.0f} ms apart):"
            f" the median request is in a burst of {b['size_p50']}, the 90th percentile in"
            f" one of {b['size_p90']}; by burst size: {bands}"
        )
        waits = r["run_queue_percent"]
        resp_wait = sum(v for k, v in waits.items() if k not in ("hub", "requester"))
        print(
            "      runnable but waiting for a core (% of the window, all threads):"
            f" hub {waits['hub']:.0f}%, requester {waits['requester']:.0f}%,"
            f" responders {resp_wait:.0f}%"
        )
    print("\nhub internals (from its /metrics over the window; per round trip = per rt):")
    for r in results:
        h = r["hub"]
        print(
            f"  concurrency {r['concurrency']:>3}: {h['commits_per_s']:.0f} group commits/s, "
            f"{h['jobs_per_commit']:.1f} jobs/commit, {h['commit_ms']:.2f} ms/commit, "
            f"db writer busy {h['db_writer_busy_percent']:.0f}%"
        )
        print(f"      writes per rt: {h['writes_per_rt']}")
        print(f"      requests per rt: {h['requests_per_rt']}")
        print(
            f"      on the database thread: ms per job {h['job_ms']},"
            f" COMMIT {h['commit_only_ms']:.2f} ms"
        )
        print(f"      mean ms inside the hub: {h['hub_ms']}")
        over = ", ".join(f"{v:.1f}% over {k} ms" for k, v in h["dat_over_ms"].items())
        print(f"      dat-requests inside the hub: {over}")
        print(
            f"      hub event-loop lag: mean {h['loop_lag_ms']:.1f} ms,"
            f" {h['loop_lag_over_10ms']:.1f}% of ticks over 10 ms"
        )
    print(
        "  (CPU % is of one core, over the measured window; this machine has "
        f"{os.cpu_count()} cores shared by the hub and the partner processes; 'other' is\n"
        "   everything else that ran on it meanwhile, which skews the figures when large)"
    )


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def print_profile(file: Path, thread: str, top: int = 25, *, cumulative: bool = True) -> None:
    stats = pstats.Stats(str(file))
    entries = stats.stats  # type: ignore[attr-defined]
    rows = [
        (f"{_short(fn)}:{line}({name})", nc, tt, ct)
        for (fn, line, name), (_cc, nc, tt, ct, _callers) in entries.items()
    ]
    total = stats.total_tt  # type: ignore[attr-defined]
    orders = (("cumulative", 3), ("own (tottime)", 2)) if cumulative else (("own", 2),)
    for title, key in orders:
        print(f"\nhub profile, top {top} by {title} time (total {total:.1f} s, {thread}):")
        print(f"{'calls':>10} {'own s':>8} {'cum s':>8}  function")
        for where, nc, tt, ct in sorted(rows, key=lambda r: -float(r[key]))[:top]:
            print(f"{nc:>10} {tt:>8.2f} {ct:>8.2f}  {where}")


def add_wire(results: list[dict[str, Any]], acks: list[tuple[float, float]], said: str) -> None:
    """Each level's ack percentiles as the loopback interface saw them, over the
    level's measured window (`--wire`)."""
    for r in results:
        low, high = r["window_wall"]
        inside = sorted(ms for ts, ms in acks if low <= ts < high)
        r["wire_ack_ms"] = [percentile(inside, p) for p in (50, 95, 99)]
        r["wire_acks"] = len(inside)
        r["wire_note"] = said.strip()


def orchestrate(args: argparse.Namespace) -> int:
    levels = [int(c) for c in args.concurrency.split(",")]
    base = Path(tempfile.mkdtemp(prefix="zvh-bench-"))
    children: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    profile = Path(args.profile_out or base / "hub.prof").resolve()
    results: list[dict[str, Any]] = []

    def spawn(argv: list[str], name: str, stdout: int | IO[bytes] | None = None) -> Any:
        err = (base / f"{name}.stderr").open("wb")
        logs.append(err)
        if stdout is None:
            out = (base / f"{name}.stdout").open("wb")
            logs.append(out)
            stdout = out
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err, cwd=REPO)
        children.append(proc)
        return proc

    try:
        port, metrics_port = free_port(), free_port()
        url = f"http://127.0.0.1:{port}"
        probe_before = speed_probe_ms()
        print(
            f"setting up a hub in {base} "
            "(CLI: init-hub, protocol publish, keys generate, partner add)"
        )
        config, key_files = setup_hub(base, port, metrics_port)
        serve = ["-m", "gateway", "serve", "--config", str(config)]
        me = str(Path(__file__).resolve())
        if args.profile:
            serve = ["-m", "cProfile", "-o", str(profile), *serve]
        elif args.profile_threads:
            hub_spec = {"out": str(profile), "argv": serve[2:]}
            serve = [me, "--worker", "hub", "--spec", json.dumps(hub_spec)]
        hub: subprocess.Popen[bytes] = spawn([sys.executable, *serve], "hub")
        wait_ready(hub, url)
        profiled = args.profile or args.profile_threads
        print(f"hub pid {hub.pid} ready on {url}" + (" (under cProfile)" if profiled else ""))
        asyncio.run(accede_all(url, key_files))
        pids = {"hub": hub.pid}
        wire_file = base / "wire.txt"
        if args.wire:  # stopped with the responders, before the hub
            wire_spec = {"port": port, "out": str(wire_file)}
            capture_argv = ["--worker", "capture", "--spec", json.dumps(wire_spec)]
            spawn([sys.executable, me, *capture_argv], "wire")
        for org in RESPONDERS:
            responder_spec = {
                "url": url,
                "key_file": str(key_files[org]),
                "batch": args.answers == "batch",
            }
            proc = spawn(
                [sys.executable, me, "--worker", "responder", "--spec", json.dumps(responder_spec)],
                org,
            )
            pids[org] = proc.pid
        spec = {
            "url": url,
            "key_file": str(key_files[REQUESTER]),
            "recipients": list(RESPONDERS),
            "levels": levels,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "pids": pids,
            "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics",
        }
        requester: subprocess.Popen[bytes] = spawn(
            [sys.executable, me, "--worker", "requester", "--spec", json.dumps(spec)],
            "requester",
            stdout=subprocess.PIPE,
        )
        budget = len(levels) * (args.seconds + args.warmup + RT_TIMEOUT_S + 20) + 60
        watchdog = threading.Timer(budget, requester.kill)
        watchdog.start()
        assert requester.stdout is not None
        for raw in requester.stdout:
            line = raw.decode().strip()
            if line.startswith("{"):
                results.append(json.loads(line))
                r = results[-1]
                print(f"  concurrency {r['concurrency']}: {r['rt_per_s']:.1f} round trips/s")
            elif line:
                print(line.lstrip("# "), flush=True)
        watchdog.cancel()
        if requester.wait(timeout=30) != 0:
            print((base / "requester.stderr").read_text(errors="replace")[-3000:])
            print(f"the requester failed (exit {requester.returncode})")
        for proc in children[1:-1]:
            stop_process(proc, signal.SIGTERM, 10)
        t0 = time.monotonic()
        rc = stop_process(hub, signal.SIGINT, 15)
        print(f"hub stopped on SIGINT in {time.monotonic() - t0:.1f} s, exit code {rc}")
        for name in RESPONDERS:
            out = (base / f"{name}.stdout").read_text().strip()
            print(f"  responder {out}")
        if args.wire:
            add_wire(results, read_capture(wire_file), (base / "wire.stdout").read_text())
        if results:
            print_table(results, profiled)
            print(
                f"machine speed probe (a fixed Python loop, ms, lower is faster): "
                f"{probe_before:.1f} before, {speed_probe_ms():.1f} after the run"
            )
        if args.profile:
            if profile.exists():
                print_profile(profile, "main thread")
                print(f"\nprofile written to {profile}")
            else:
                print("no profile written: did the hub shut down gracefully?")
        if args.profile_threads:
            main_file = profile.with_name(profile.name + ".main")
            if main_file.exists():
                print_profile(main_file, "event loop thread")
                names = dict(
                    line.split(": ", 1)
                    for line in (base / "hub.stderr").read_text().splitlines()
                    if line.startswith("thread-")
                )
                for file in sorted(profile.parent.glob(profile.name + ".thread-*")):
                    key = file.name.rsplit(".", 1)[1]
                    label_ = f"{key}, {names.get(key, '?')}"
                    print_profile(file, label_, 15, cumulative=False)
                print(f"\nprofiles written to {profile}.*")
            else:
                print("no profile written: did the hub shut down gracefully?")
        return 0 if rc == 0 and requester.returncode == 0 and results else 1
    finally:
        for proc in children:
            if proc.poll() is None:
                stop_process(proc, signal.SIGTERM, 5)
        for f in logs:
            f.close()
        if args.keep:
            print(f"kept {base}")
        else:
            if args.profile_out is None:
                for file in profile.parent.glob(profile.name + "*"):
                    kept = Path(tempfile.gettempdir()) / file.name.replace("hub", "zvh-bench-hub")
                    shutil.copy(file, kept)
                    print(f"profile copied to {kept}")
            shutil.rmtree(base, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="measured window per level")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up per level, seconds")
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated levels")
    prof = p.add_mutually_exclusive_group()
    prof.add_argument("--profile", action="store_true", help="run the hub under cProfile")
    prof.add_argument(
        "--profile-threads", action="store_true", help="profile every thread of the hub"
    )
    p.add_argument("--profile-out", help="where to write the hub's profile")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument(
        "--answers",
        choices=["single", "batch"],
        default="single",
        help="responders answer one request per answer (PROTOCOL §7) or up to 100 at once"
        " (the POST /api/v1/answers extension)",
    )
    p.add_argument(
        "--wire",
        action="store_true",
        help="also time each ack on the loopback interface, with kernel timestamps"
        " (bench/wire.py; needs root)",
    )
    p.add_argument(
        "--worker", choices=["requester", "responder", "hub", "capture"], help=argparse.SUPPRESS
    )
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "requester":
        asyncio.run(run_requester(json.loads(args.spec)))
        return 0
    if args.worker == "hub":
        spec = json.loads(args.spec)
        return run_hub_profiled(spec["out"], spec["argv"])
    if args.worker == "capture":
        spec = json.loads(args.spec)
        return capture(spec["port"], Path(spec["out"]))
    if args.worker == "responder":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_responder(json.loads(args.spec)))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
