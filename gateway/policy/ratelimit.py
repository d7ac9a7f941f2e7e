"""Per-organisation rate limits: token buckets in memory, pure and clock-injected.

A bucket holds up to `burst` tokens and refills at `rate_per_minute / 60` a second;
a request that costs more than the bucket holds is refused with the whole seconds
after which it would fit (the `Retry-After` of a 429). Keys are organisation ids
from a node's own directory, so the number of buckets is bounded by it. Limits live
in memory: a restart refills every bucket, which errs on the side of availability
for at most one burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float


class RateLimiter:
    def __init__(self, rate_per_minute: float, *, burst: float | None = None) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self._rate_s = rate_per_minute / 60.0
        self._burst = float(rate_per_minute if burst is None else burst)
        if self._burst < 1:
            raise ValueError("burst must be at least 1")
        self._buckets: dict[str, _Bucket] = {}

    @property
    def burst(self) -> float:
        return self._burst

    def take(self, key: str, now_s: float, cost: float = 1.0) -> int:
        """Take `cost` tokens from `key`'s bucket: 0 when allowed, else the seconds to
        wait (at least 1). A cost above the burst can never pass and is refused."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now_s)
        elapsed = max(0.0, now_s - bucket.at_s)  # a clock that went back refills nothing
        bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate_s)
        bucket.at_s = max(bucket.at_s, now_s)
        if cost <= bucket.tokens:
            bucket.tokens -= cost
            return 0
        if cost > self._burst:
            return max(1, math.ceil(self._burst / self._rate_s))
        return max(1, math.ceil((cost - bucket.tokens) / self._rate_s))
