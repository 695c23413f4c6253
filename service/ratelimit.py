"""Per-tenant request rates, with the ``limits`` library (moving windows).

The counters live in Redis when ``ADAIN_REDIS_URL`` is set, so a tenant's limit holds across every
replica, and in this process's memory otherwise. A Redis that cannot be reached must not turn every
request into an error: the check then lets the request through (fails open), logs it at most once
a minute and counts it (``adain_rate_limit_errors_total``)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import limits
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from service.tenants import Caller

log = logging.getLogger("adain.ratelimit")
RETRY_AFTER_ERROR = 5.0  # s without rate checks after their store failed


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window frees a request

    def headers(self) -> dict[str, str]:
        h = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
             "RateLimit-Reset": str(self.reset)}
        return h if self.allowed else {**h, "Retry-After": str(max(1, self.reset))}


@lru_cache(maxsize=256)
def parse(rate: str) -> tuple[limits.RateLimitItem, ...]:
    return tuple(limits.parse_many(rate)) if rate else ()


class RateLimiter:
    def __init__(self, redis_url: str | None, on_error: Callable[[], None] | None = None) -> None:
        storage: Storage
        if redis_url:
            # short timeouts: a Redis outage costs a request about a second at most, then it goes through
            storage = RedisStorage(redis_url, key_prefix="adain:rate", socket_connect_timeout=0.5, socket_timeout=1.0)
        else:
            storage = MemoryStorage()
        self.storage = storage
        self.remote = bool(redis_url)  # a network call: the caller keeps it off the event loop
        self.limiter = MovingWindowRateLimiter(storage)
        self.on_error = on_error or (lambda: None)
        self._last_logged = 0.0
        self._down_until = 0.0

    def hit(self, caller: Caller) -> Verdict | None:
        """Count one request of ``caller``; None when the tenant has no limit (or the counters
        cannot be reached). Every window is checked and the tightest one reported."""
        items = parse(caller.limits.rate_limit)
        if not items or time.monotonic() < self._down_until:
            return None
        try:
            for item in items:
                if not self.limiter.hit(item, caller.tenant):
                    return self._verdict(False, item, caller.tenant)
            return min((self._verdict(True, item, caller.tenant) for item in items), key=lambda v: v.remaining)
        except Exception as e:  # noqa: BLE001 - any storage failure: fail open, never a 500
            self.on_error()
            self._down_until = time.monotonic() + RETRY_AFTER_ERROR
            if time.monotonic() - self._last_logged > 60:
                self._last_logged = time.monotonic()
                log.warning("rate limits not enforced: their store is unreachable (%s: %s)", type(e).__name__, e)
            return None

    def _verdict(self, allowed: bool, item: limits.RateLimitItem, tenant: str) -> Verdict:
        stats = self.limiter.get_window_stats(item, tenant)
        return Verdict(allowed, item.amount, max(0, stats.remaining), max(0, math.ceil(stats.reset_time - time.time())))
