"""Dependencies injected into routes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from service.errors import Busy, Unauthorized
from service.state import AppState

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="required when the server sets ADAIN_API_KEYS")


def get_state(request: Request) -> AppState:
    return request.app.state.svc


def ready_state(state: Annotated[AppState, Depends(get_state)]) -> AppState:
    if not state.ready:
        raise Busy("the model is still loading; retry shortly", headers={"Retry-After": "5"})
    return state


def require_api_key(state: Annotated[AppState, Depends(get_state)],
                    key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    keys = state.settings.api_keys
    if not keys:
        return
    given = (key or "").encode()
    # compare against every key in constant time, so timing reveals neither which key nor how much matched
    if not any([hmac.compare_digest(given, k.encode()) for k in keys]):
        raise Unauthorized("missing or wrong API key: send it in the X-API-Key header",
                           headers={"WWW-Authenticate": "X-API-Key"})


State = Annotated[AppState, Depends(ready_state)]
