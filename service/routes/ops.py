"""Health, readiness and metrics: always open (no API key), cheap, never queued."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import get_state
from service.schemas import Health, Readiness
from service.state import AppState

router = APIRouter(tags=["operations"])
AnyState = Annotated[AppState, Depends(get_state)]


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, summary="Weights loaded and warm (503 until then)",
            responses={503: {"model": Readiness}})
async def readyz(state: AnyState) -> Response:
    s = state.stylizer
    body = Readiness(ready=state.ready, device=str(s.device) if s else None, precision=s.precision if s else None,
                     decoder=str(state.settings.decoder), load_seconds=round(state.load_seconds, 3),
                     presets=len(state.registry.presets))
    return JSONResponse(body.model_dump(), status_code=200 if state.ready else 503)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: AnyState) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
