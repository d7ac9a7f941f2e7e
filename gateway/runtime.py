"""The serving process's garbage collector: no long stop-the-world pauses under load.

A hub keeps many live objects (caches, the directory, the replay cache, aiohttp and
pydantic internals); with CPython's default thresholds a full collection walks all of
them every few seconds under load, about 30-35 ms each time, during which no request
moves (six of them in 25 s of bench/exchange.py at 64 concurrent requesters, on top
of some 750 young and 70 middle collections). Reference counting frees almost all of
a request's garbage anyway; the collector is only for cycles.

Must not: disable the collector (cycles must still be freed), or run per request.
"""

from __future__ import annotations

import gc

# The youngest generation is collected after this many more container allocations than
# deallocations (CPython's default is 700), the middle one after 20 young collections,
# the oldest after 100 middle ones (and only when it grew by a quarter, CPython's rule).
THRESHOLDS = (20_000, 20, 100)


def settle_heap() -> None:
    """Once a node is up: collect, move every object that survived start-up out of the
    collector's sight for good (gc.freeze: modules, configuration, keys, caches as
    loaded), and collect less often from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
