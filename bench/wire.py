"""The hub's acknowledgement as the loopback interface saw it (bench/exchange.py --wire).

A benchmark client times a response when its own event loop comes round to it, so a
busy client adds its own lag to the hub's. This reads the loopback traffic to and from
the hub's port with kernel timestamps (an AF_PACKET socket with SO_TIMESTAMPNS, so
the timestamps do not depend on when this process is scheduled) and times each
dat-request from its last request packet to the first packet of its response. Linux
only; needs CAP_NET_RAW (root).

Only IPv4/TCP on `lo` and HTTP/1.1 without pipelining (what aiohttp does): on one
connection a request is answered before the next one starts. Writes one line per
dat-request, `<response time, s since the epoch> <latency ms>`, when stopped
(SIGTERM or SIGINT).
"""

from __future__ import annotations

import select
import signal
import socket
import struct
from pathlib import Path
from typing import Any

_ETH_P_ALL = 0x0003
_SO_TIMESTAMPNS = 35  # <asm-generic/socket.h>; not exported by the socket module
_ETH_HEADER = 14  # `lo` frames carry an all-zero Ethernet header
_TCP = 6
_DAT = b"POST /api/v1/dat-requests"
_METHODS = (b"GET ", b"POST", b"PUT ", b"DELE", b"HEAD", b"PATC", b"OPTI")


def open_capture() -> socket.socket:
    """The raw socket on `lo`; PermissionError without CAP_NET_RAW."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    sock.bind(("lo", 0))
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    return sock


def _timestamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
            seconds, nanos = struct.unpack("qq", value[:16])
            return float(seconds) + float(nanos) / 1e9
    return None


class Pairing:
    """Pairs each request on a connection with the response that follows it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._open: dict[int, list[Any]] = {}  # client port -> [is dat-request, last packet]
        self.dat: list[tuple[float, float]] = []  # (response time, latency ms)

    def packet(self, frame: bytes, ts: float) -> None:
        ip = frame[_ETH_HEADER:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != _TCP:
            return
        tcp = ip[(ip[0] & 0x0F) * 4 :]
        if len(tcp) < 20:
            return
        source, destination = struct.unpack("!HH", tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if not payload:
            return
        if destination == self.port:
            if payload.startswith(_METHODS):
                self._open[source] = [payload.startswith(_DAT), ts]
            elif source in self._open:
                self._open[source][1] = ts  # more of the request (its body)
        elif source == self.port and payload.startswith(b"HTTP/1.1 "):
            request = self._open.pop(destination, None)
            if request is not None and request[0]:
                self.dat.append((ts, (ts - request[1]) * 1000))


def capture(port: int, out: Path) -> int:
    """Capture until SIGTERM/SIGINT, then write `out`. Exit code 2 without permission."""
    try:
        sock = open_capture()
    except PermissionError:
        print("the wire capture needs CAP_NET_RAW (root)", flush=True)
        return 2
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pairing = Pairing(port)
    while not stop:
        try:
            ready, _, _ = select.select([sock], [], [], 0.2)
        except InterruptedError:
            continue
        if not ready:
            continue
        frame, ancillary, _flags, address = sock.recvmsg(65535, 1024)
        ts = _timestamp(ancillary)
        # Each loopback packet is seen twice: once going out, once coming in.
        if ts is not None and address[2] != socket.PACKET_OUTGOING:
            pairing.packet(frame, ts)
    out.write_text("".join(f"{ts:.6f} {ms:.3f}\n" for ts, ms in pairing.dat), encoding="utf-8")
    return 0


def read_capture(file: Path) -> list[tuple[float, float]]:
    if not file.exists():
        return []
    rows = (line.split() for line in file.read_text(encoding="utf-8").splitlines())
    return [(float(ts), float(ms)) for ts, ms in rows]
