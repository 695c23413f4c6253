"""A bounded queue in front of the model: a fixed pool of worker threads, a fixed number of waiting
slots, a deadline per request, and cooperative cancellation.

Python cannot kill a thread, so a request that times out or whose client disconnects sets its
``threading.Event``; the job checks it between stages (decode, each style, network, encode) and
stops. Slots are released when the thread really finishes, so the 503 decision always reflects the
work actually in progress.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from service.errors import Busy, Cancelled, TimedOut

T = TypeVar("T")


class ModelQueue:
    def __init__(self, workers: int, depth: int, timeout: float) -> None:
        self.workers = workers
        self.capacity = workers + depth
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model")
        self._lock = threading.Lock()
        self._pending = 0  # accepted, not finished (waiting or running)
        self._running = 0
        self._avg_seconds = 1.0  # moving average of job time, for Retry-After

    @property
    def in_flight(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._pending - self._running

    def retry_after_if_full(self) -> int | None:
        """Retry-After seconds when no slot is free now, else None (a hint: ``run`` decides)."""
        return self.retry_after() if self._pending >= self.capacity else None

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead divided among the workers."""
        return max(1, math.ceil(self._pending * self._avg_seconds / self.workers))

    async def run(self, job: Callable[[threading.Event], T], timeout: float | None = None) -> T:
        """Run ``job(cancel_event)`` on a worker; 503 when full, 504 past the deadline (``timeout``
        seconds, the queue's own by default)."""
        timeout = timeout or self.timeout
        with self._lock:
            if self._pending >= self.capacity:
                raise Busy(f"the server is busy ({self._pending} requests ahead); retry shortly",
                           headers={"Retry-After": str(self.retry_after())})
            self._pending += 1
        cancel = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._call, job, cancel)
        # A job abandoned on timeout still finishes (or raises Cancelled): retrieve its outcome so
        # asyncio does not log "exception never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            cancel.set()
            raise TimedOut(f"the request took longer than {timeout:g} s; try a smaller image") from None
        except asyncio.CancelledError:  # the client went away
            cancel.set()
            raise

    def _call(self, job: Callable[[threading.Event], T], cancel: threading.Event) -> T:
        start = time.perf_counter()
        with self._lock:
            self._running += 1
        try:
            if cancel.is_set():
                raise Cancelled()
            return job(cancel)
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._running -= 1
                self._pending -= 1
                self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * elapsed

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
