"""The model, shared fairly: tenants take turns, a piece of work at a time.

``ModelQueue.run(caller, job)`` accepts a job (or refuses it: 503 when the whole queue is full, 429
when the caller's tenant already has ``queue_depth`` jobs waiting), gives it a thread, and lets it
start once it holds one of ``workers`` model slots. Slots go to tenants in turn (weighted round
robin: a tenant of weight w gets w turns in a row), not first come, first served.

The unit handed out is a **piece**: a small image is one piece; a large image gives its slot back
after every tile (``Turn.checkpoint``), and so does a live frame, so between two pieces the model
can serve another tenant. A request that times out or whose client goes away is cancelled and
stops at its next piece; a server shutting down cancels every job, so it does not wait for an 8K
render. Slots are freed when the thread really stops, so the 503 decision reflects the work in
progress: Python cannot kill a thread, a job must reach its next checkpoint."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from service.errors import Busy, Cancelled, TimedOut, TooManyRequests
from service.tenants import Caller

T = TypeVar("T")
log = logging.getLogger("adain.queue")


@dataclass(eq=False)
class Ticket:
    tenant: str
    weight: int
    cancel: threading.Event = field(default_factory=threading.Event)
    granted: bool = False
    granted_at: float = 0.0
    queued_at: float = 0.0


class Turn:
    """A job's hold on the model, handed to the job: ``cancel`` is set when nobody waits for the
    result any more; ``checkpoint()`` between pieces stops a cancelled job and lets another
    tenant's waiting job have the slot first."""

    def __init__(self, queue: ModelQueue, ticket: Ticket) -> None:
        self._queue, self._ticket = queue, ticket
        self.cancel = ticket.cancel

    def checkpoint(self) -> None:
        self._queue._checkpoint(self._ticket)


class ModelQueue:
    def __init__(self, workers: int, depth: int, timeout: float,
                 on_model_seconds: Callable[[str, float], None] | None = None) -> None:
        self.workers = workers
        self.capacity = workers + depth
        self.timeout = timeout
        self.on_model_seconds = on_model_seconds or (lambda tenant, seconds: None)
        # one thread per accepted job: a job waiting for its turn (or its next piece) holds one
        self._pool = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="model")
        self._cond = threading.Condition()
        self._free = workers
        self._waiting: OrderedDict[str, deque[Ticket]] = OrderedDict()
        self._ring: list[str] = []  # tenants in the order first seen: the round robin's order
        self._last: str | None = None
        self._credit = 0  # turns the last tenant may still take in a row (its weight - 1 at first)
        self._tickets: set[Ticket] = set()
        self._pending: dict[str, int] = {}  # per tenant: accepted, not finished
        self._avg_seconds = 1.0  # moving average of job time, for Retry-After

    # state for metrics and Retry-After

    @property
    def in_flight(self) -> int:
        return self.workers - self._free

    @property
    def accepted(self) -> int:
        """Jobs accepted and not finished (waiting or running)."""
        return sum(self._pending.values())

    @property
    def waiting(self) -> int:
        return self.accepted - self.in_flight

    def retry_after_if_full(self) -> int | None:
        """Retry-After seconds when no place is free now, else None (a hint: ``run`` decides)."""
        return self.retry_after() if self.accepted >= self.capacity else None

    def retry_after(self, jobs: int | None = None) -> int:
        """Seconds until ``jobs`` (all accepted ones by default) are likely done."""
        jobs = self.accepted if jobs is None else jobs
        return max(1, math.ceil(jobs * self._avg_seconds / self.workers))

    # the asyncio side

    async def run(self, caller: Caller, job: Callable[[Turn], T], timeout: float | None = None) -> T:
        """Run ``job(turn)`` in ``caller``'s turns; 503 when the queue is full, 429 when the
        tenant's share of it is, 504 past the deadline (``timeout`` s, the queue's own by default)."""
        timeout = timeout or self.timeout
        ticket = self._admit(caller)
        context = contextvars.copy_context()  # the request's id and tenant, for the job's log lines
        future = asyncio.get_running_loop().run_in_executor(self._pool, context.run, self._call, job, ticket)
        # A job abandoned on timeout still finishes (or raises Cancelled): retrieve its outcome so
        # asyncio does not log "exception never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            self._cancel(ticket)
            raise TimedOut(f"the request took longer than {timeout:g} s; try a smaller image") from None
        except asyncio.CancelledError:  # the client went away
            self._cancel(ticket)
            raise

    def _admit(self, caller: Caller) -> Ticket:
        with self._cond:
            total, mine = self.accepted, self._pending.get(caller.tenant, 0)
            if total >= self.capacity:
                raise Busy(f"the server is busy ({total} requests ahead); retry shortly",
                           headers={"Retry-After": str(self.retry_after())})
            if mine >= caller.limits.queue_depth + self.workers:
                raise TooManyRequests(f"tenant {caller.tenant!r} already has {mine} requests in progress or waiting "
                                      f"(its share of the queue); wait for some to finish",
                                      headers={"Retry-After": str(self.retry_after(mine))})
            self._pending[caller.tenant] = mine + 1
            ticket = Ticket(caller.tenant, max(1, caller.limits.weight))
            self._tickets.add(ticket)
            return ticket

    def _cancel(self, ticket: Ticket) -> None:
        with self._cond:
            ticket.cancel.set()
            self._cond.notify_all()  # a job waiting for its turn wakes up to stop

    # the thread side

    def _call(self, job: Callable[[Turn], T], ticket: Ticket) -> T:
        start = time.perf_counter()
        try:
            with self._cond:
                self._wait_turn(ticket, front=False)
            try:
                return job(Turn(self, ticket))
            finally:
                with self._cond:
                    self._release(ticket)
        finally:
            with self._cond:
                self._tickets.discard(ticket)
                self._pending[ticket.tenant] -= 1
                if not self._pending[ticket.tenant]:
                    del self._pending[ticket.tenant]
                self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * (time.perf_counter() - start)

    def _checkpoint(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.cancel.is_set():
                raise Cancelled()
            if not any(tenant != ticket.tenant for tenant in self._waiting):
                return  # nobody else waits: keep the slot
            self._release(ticket)
            self._wait_turn(ticket, front=True)  # first in its tenant's line: its requests stay in order

    def _wait_turn(self, ticket: Ticket, front: bool) -> None:
        """Queue ``ticket`` and wait (the lock held) until a slot is granted; Cancelled if it is
        cancelled first."""
        line = self._waiting.setdefault(ticket.tenant, deque())
        line.appendleft(ticket) if front else line.append(ticket)
        ticket.queued_at = time.perf_counter()
        if ticket.tenant not in self._ring:
            self._ring.append(ticket.tenant)
        self._grant()
        while not ticket.granted:
            if ticket.cancel.is_set():
                line = self._waiting.get(ticket.tenant)
                if line is not None and ticket in line:
                    line.remove(ticket)
                    if not line:
                        del self._waiting[ticket.tenant]
                raise Cancelled()
            self._cond.wait()

    def _release(self, ticket: Ticket) -> None:
        if ticket.granted:
            ticket.granted = False
            self._free += 1
            ran = time.perf_counter() - ticket.granted_at
            self.on_model_seconds(ticket.tenant, ran)
            # a piece's timeline (bench/tenants.py prints it): who, how long it waited for the slot, ran
            log.debug("piece tenant=%s waited=%.3f ran=%.3f", ticket.tenant, ticket.granted_at - ticket.queued_at, ran)
            self._grant()

    def _grant(self) -> None:
        """Hand free slots to waiting tickets, tenants in turn."""
        while self._free and self._waiting:
            tenant = self._next_tenant()
            line = self._waiting[tenant]
            ticket = line.popleft()
            if not line:
                del self._waiting[tenant]
            ticket.granted, ticket.granted_at = True, time.perf_counter()
            self._free -= 1
            self._cond.notify_all()

    def _next_tenant(self) -> str:
        if self._last in self._waiting and self._credit > 0:
            self._credit -= 1
            return self._last
        start = self._ring.index(self._last) + 1 if self._last in self._ring else 0
        for i in range(len(self._ring)):
            tenant = self._ring[(start + i) % len(self._ring)]
            if tenant in self._waiting:
                self._last = tenant
                self._credit = self._waiting[tenant][0].weight - 1
                return tenant
        raise AssertionError("a waiting tenant is missing from the ring")

    def shutdown(self) -> None:
        """Cancel every job (each stops at its next piece) and wait for the threads."""
        with self._cond:
            for ticket in self._tickets:
                ticket.cancel.set()
            self._cond.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
