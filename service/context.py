"""Who did what: a request id for every request and stream, carried with the tenant into every log
line the request causes (on the event loop and on the model's threads alike).

The id is the client's ``X-Request-ID`` when it is sane (1-64 of letters, digits, ``.``, ``_``,
``:``, ``-``), else a new one; it is echoed in the response. The tenant is set by the caller
dependency (service.deps) once it knows who is calling. Both ride in context variables, which
``asyncio`` tasks, ``asyncio.to_thread`` and the model queue (service.queue) carry along."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str] = ContextVar("request_id", default="-")
tenant: ContextVar[str] = ContextVar("tenant", default="-")
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(tenant)s]: %(message)s"


def install_log_fields() -> None:
    """Give every log record ``request_id`` and ``tenant`` (``-`` outside a request), whichever
    logger or handler it goes through (uvicorn's access log too)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "adds_request_fields", False):
        return

    def record(*args, **kwargs) -> logging.LogRecord:
        r = factory(*args, **kwargs)
        r.request_id, r.tenant = request_id.get(), tenant.get()
        return r

    record.adds_request_fields = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record)


class RequestContextMiddleware:
    """Sets the request id (and a fresh tenant) for HTTP requests and WebSockets; adds
    ``X-Request-ID`` and the rate-limit headers the caller dependency left in the request's state
    to the response, whatever route or error handler made it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if SANE_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        request_id.set(rid)
        tenant.set("-")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = {"x-request-id": rid, **{k.lower(): v for k, v in state.get("rate_headers", {}).items()}}
                present = {k.lower() for k, _ in message.get("headers", [])}
                added = [(k.encode(), v.encode()) for k, v in extra.items() if k.encode() not in present]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        await self.app(scope, receive, send_with_headers)
