"""Request rate limits: a token bucket per client, answered with 429 and Retry-After when empty.

The auditor API counts per token once the token is known (one busy auditor does not starve the
others, a stolen token cannot pull the trail at full speed, and the access log names who was
refused); ingest counts per client address. 0 disables a limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import HTTPException

MAX_CLIENTS = 100_000  # buckets kept; the least recently seen are forgotten (they refill anyway)


class RateLimiter:
    def __init__(self, per_second: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst if burst is not None else max(1.0, 2 * per_second)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """0 if a request of `key` may go now (and count it), else the seconds until it may."""
        if self.per_second <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.per_second)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.per_second
            self._buckets[key] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return wait

    def check(self, key: str, who: str) -> None:
        """Count a request of `key`; HTTP 429 with Retry-After if it is over the rate."""
        wait = self.retry_after(key)
        if wait:
            seconds = math.ceil(wait)
            raise HTTPException(429, f"too many requests from {who}: at most {self.per_second:g} per second "
                                f"(bursts of {self.burst:g}); retry after {seconds} s",
                                headers={"Retry-After": str(seconds)})
