"""Dependencies injected into routes: the engine (503 until loaded), the API key check, the forms."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from service import forms
from service.engine import Engine
from service.errors import Busy, Unauthorized

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="required when the server sets ADAIN_API_KEYS")


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def ready_engine(engine: Annotated[Engine, Depends(get_engine)]) -> Engine:
    if not engine.ready:
        raise Busy("the model is still loading; retry shortly", headers={"Retry-After": "5"})
    return engine


def key_matches(keys: list[str], key: str | None) -> bool:
    """Whether ``key`` is one of ``keys``, compared against every key in constant time, so timing
    reveals neither which key nor how much matched."""
    given = (key or "").encode()
    return any([hmac.compare_digest(given, k.encode()) for k in keys])


def require_api_key(engine: Annotated[Engine, Depends(get_engine)],
                    key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    keys = engine.settings.api_keys
    if not keys:
        return
    if not key_matches(keys, key):
        raise Unauthorized("missing or wrong API key: send it in the X-API-Key header",
                           headers={"WWW-Authenticate": "X-API-Key"})


async def stylize_form(request: Request, engine: Annotated[Engine, Depends(ready_engine)]) -> forms.StylizeForm:
    return await forms.parse(request, forms.StylizeForm, engine.settings)


async def video_form(request: Request, engine: Annotated[Engine, Depends(ready_engine)]) -> forms.VideoForm:
    return await forms.parse(request, forms.VideoForm, engine.settings)


async def style_form(request: Request, engine: Annotated[Engine, Depends(ready_engine)]) -> forms.StyleForm:
    return await forms.parse(request, forms.StyleForm, engine.settings)


AnyEngine = Annotated[Engine, Depends(get_engine)]
ReadyEngine = Annotated[Engine, Depends(ready_engine)]
StylizeForm = Annotated[forms.StylizeForm, Depends(stylize_form)]
StyleForm = Annotated[forms.StyleForm, Depends(style_form)]
VideoForm = Annotated[forms.VideoForm, Depends(video_form)]
