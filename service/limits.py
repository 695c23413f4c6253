"""Request body limits, in bytes and in time.

Bytes: a declared Content-Length over the limit is refused at once (413, nothing read), and a body
without one (chunked) is counted as it streams and cut off at the limit, so memory per request is
bounded by the limit. Across requests, the bytes every request in flight may hold in memory share
one ``Budget``: a request that would go past it is refused with 503 + Retry-After (before its
body is read when it declares its length), so N concurrent uploads cannot take N x the limit.
Time: the whole body must arrive within ``body_timeout`` seconds of the request starting (408
otherwise), so a client trickling bytes cannot hold a connection and its buffers for ever.
Request headers have their deadline in service.protocol."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TypeVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def send_json(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    """Answer straight from a middleware, before the body is read (so the connection is closed:
    the unread body would otherwise have to be drained first)."""
    body = json.dumps({"detail": detail}).encode()
    head = {"content-type": "application/json", "connection": "close", "content-length": str(len(body)), **headers}
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in head.items()]})
    await send({"type": "http.response.body", "body": body})


class Budget:
    """Bytes that requests in flight may hold in memory, shared by all of them (one event loop:
    no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


BUSY = ("too many uploads are being received (ADAIN_MAX_BUFFERED_BYTES); retry in a moment", {"Retry-After": "2"})


class BodyLimitMiddleware:
    """``max_bytes`` for every request, except the paths in ``per_path``: {path: (bytes, the
    setting that sets them)} (a video upload is allowed more than an image request). ``budget``:
    the bytes shared by all requests in flight; each is charged its body, at most ``held`` bytes
    for a path in ``held`` (a video is written to disk as it arrives: only the rest of its form is
    held in memory)."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float = 60.0,
                 per_path: dict[str, tuple[int, str]] | None = None, budget: Budget | None = None,
                 held: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = (max_bytes, "ADAIN_MAX_TOTAL_BYTES")
        self.per_path = per_path or {}
        self.body_timeout = body_timeout
        self.budget = budget or Budget(1 << 62)
        self.held = held or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, setting = self.per_path.get(scope["path"], self.default)

        def detail(size: str) -> str:
            return f"request body is {size} bytes; the limit is {max_bytes} bytes ({setting}): send a smaller file"

        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and (len(length) > 18 or int(length) > max_bytes):
            await send_json(send, 413, detail(length.decode()[:40]), {})
            return
        cap = self.held.get(scope["path"], max_bytes)  # the most this request is charged
        charged = min(int(length), cap) if length is not None and length.isdigit() else 0
        if not self.budget.take(charged):  # refused before a byte of the body is read
            await send_json(send, 503, BUSY[0], BUSY[1])
            return
        seen = 0
        body_done = False
        deadline = time.monotonic() + self.body_timeout

        async def counting_receive() -> Message:
            nonlocal seen, body_done, charged
            if body_done:  # after the body only http.disconnect can come: wait as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.body_timeout:g} s "
                                         "(ADAIN_BODY_TIMEOUT)", headers={"Connection": "close"}) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise HTTPException(413, detail(f"over {max_bytes}"))
                more = min(seen, cap) - charged  # a body without a length is charged as it comes
                if more > 0:
                    if not self.budget.take(more):
                        raise HTTPException(503, BUSY[0], headers={**BUSY[1], "Connection": "close"})
                    charged += more
                body_done = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, counting_receive, send)
        finally:
            self.budget.give(charged)


F = TypeVar("F", bound=Callable)


def queues_for(queue: str) -> Callable[[F], F]:
    """Mark a POST route as waiting for ``queue`` ("model" or "video"): ``queued_paths`` finds it,
    and the app refuses it early (``EarlyBusyMiddleware``) while that queue is full."""
    def mark(endpoint: F) -> F:
        endpoint.queue = queue  # type: ignore[attr-defined]
        return endpoint

    return mark


def queued_paths(routes: list, queue: str) -> tuple[str, ...]:
    """The paths of the POST routes marked with ``queues_for(queue)``."""
    return tuple(r.path for r in routes if "POST" in (getattr(r, "methods", None) or ())
                 and getattr(getattr(r, "endpoint", None), "queue", None) == queue)


class EarlyBusyMiddleware:
    """Refuse model requests with 503 before reading their bodies while the queue is full.

    Under a flood, parsing a 500 KB multipart body only to answer 503 costs CPU the model needs:
    32 clients without back-off against 2 cores got their 503 in 64 ms (median) when every body
    was parsed first, in 26 ms with this. The queue's own check stays the authority (a request
    admitted here can still find the queue full once parsed)."""

    def __init__(self, app: ASGIApp, retry_after: Callable[[], int | None], paths: tuple[str, ...]) -> None:
        self.app = app
        self.retry_after = retry_after  # seconds to wait when full, None when there is room
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            wait = self.retry_after()
            if wait is not None:
                await send_json(send, 503, f"the server is busy; retry in {wait} s", {"retry-after": str(wait)})
                return
        await self.app(scope, receive, send)
