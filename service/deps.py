"""Dependencies injected into routes: the engine (503 until loaded), who is calling, the forms.

``CurrentCaller`` is the one way in for HTTP routes; the WebSocket takes ``StreamCaller`` (the
same resolution, ``Tenants.resolve``, except that a browser cannot set headers on a WebSocket, so
a stream without the header resolves from its first settings message). Rate limits are counted
once per request and per stream (``Engine.admit``). The aliases end in ``Dep`` or name a role, so
they cannot be mistaken for the classes in service.forms."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from service import forms
from service.engine import Engine
from service.errors import Busy
from service.tenants import Caller

def get_engine(conn: HTTPConnection) -> Engine:
    return conn.app.state.engine


def ready_engine(engine: Annotated[Engine, Depends(get_engine)]) -> Engine:
    if not engine.ready:
        raise Busy("the model is still loading; retry shortly", headers={"Retry-After": "5"})
    return engine


class HeaderKey(APIKeyHeader):
    """The X-API-Key header on an HTTP request or a WebSocket handshake (FastAPI's own reads only
    HTTP requests); documented in OpenAPI as the API's security scheme."""

    async def __call__(self, conn: HTTPConnection) -> str | None:  # type: ignore[override]
        return conn.headers.get(self.model.name)


header_key = HeaderKey(name="X-API-Key", auto_error=False, scheme_name="APIKeyHeader",
                       description="required when the server has keys (ADAIN_API_KEYS, ADAIN_KEYS_FILE); the key "
                                   "says which tenant is calling")


async def current_caller(conn: HTTPConnection, engine: Annotated[Engine, Depends(get_engine)],
                         key: Annotated[str | None, Depends(header_key)] = None) -> Caller:
    """Who is calling (401 for a missing or wrong key), counted against its rate (429). Async, so
    the tenant it sets for the log lines stays with the request's task."""
    caller = engine.caller(key)
    await engine.admit(caller, conn.scope.setdefault("state", {}))
    return caller


def stream_caller(engine: Annotated[Engine, Depends(get_engine)],
                  key: Annotated[str | None, Depends(header_key)] = None) -> Caller | None:
    """A stream's caller from its handshake's header; None when it sent none or a wrong one: the
    key may still come in its first settings message (service.live counts the stream's rate)."""
    return engine.tenants.resolve(key)


async def stylize_form(request: Request, engine: Annotated[Engine, Depends(ready_engine)]) -> forms.StylizeForm:
    return await forms.parse(request, forms.StylizeForm, engine.settings)


async def video_form(request: Request, engine: Annotated[Engine, Depends(ready_engine)]) -> forms.VideoForm:
    return await forms.parse(request, forms.VideoForm, engine.settings)


async def style_form(request: Request, engine: Annotated[Engine, Depends(ready_engine)]) -> forms.StyleForm:
    return await forms.parse(request, forms.StyleForm, engine.settings)


async def preview_form(request: Request, engine: Annotated[Engine, Depends(ready_engine)]) -> forms.PreviewForm:
    return await forms.parse(request, forms.PreviewForm, engine.settings)


AnyEngine = Annotated[Engine, Depends(get_engine)]
ReadyEngine = Annotated[Engine, Depends(ready_engine)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
StreamCaller = Annotated[Caller | None, Depends(stream_caller)]
StylizeFormDep = Annotated[forms.StylizeForm, Depends(stylize_form)]
StyleFormDep = Annotated[forms.StyleForm, Depends(style_form)]
VideoFormDep = Annotated[forms.VideoForm, Depends(video_form)]
PreviewFormDep = Annotated[forms.PreviewForm, Depends(preview_form)]
