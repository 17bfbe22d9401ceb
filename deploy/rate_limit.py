"""Request rate limits: a token bucket per client, answered with 429 and Retry-After when empty.

The auditor API counts per token once the token is known (deploy/auditor/api.py: one busy auditor
does not starve the others, a stolen token cannot pull the trail at full speed, and the access log
names who was refused); ingest counts per client address (this middleware). 0 disables a limit.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

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


def client_key(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "?"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter, prefix: str, what: str) -> None:
        self.app = app
        self.limiter = limiter
        self.prefix = prefix
        self.what = what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.retry_after(client_key(scope))
        if wait == 0:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": f"too many {self.what} requests: at most {self.limiter.per_second:g} per second "
                                     f"(bursts of {self.limiter.burst:g}); retry after {math.ceil(wait)} s"}).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", str(math.ceil(wait)).encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
