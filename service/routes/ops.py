"""Health, readiness, limits and metrics: always open (no API key), cheap, never queued."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import AnyEngine, ReadyEngine
from model.images import IMAGE_SUFFIXES, INPUT_FORMATS, INPUT_MEDIA_TYPES, OUTPUT_FORMATS
from model.stylizer import MASK_ASPECT_TOLERANCE
from service.schemas import Health, Limits, ModelList, ModelVersion, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, summary="Weights loaded and warm (503 until then)",
            responses={503: {"model": Readiness}})
async def readyz(engine: AnyEngine) -> Response:
    s = engine.stylizer
    store_ok, detail = await engine.store_state()
    body = Readiness(ready=engine.ready, device=str(s.device) if s else None, precision=s.precision if s else None,
                     backend=s.backend if s else None, decoder=str(engine.settings.decoder),
                     model_version=engine.decoders.store.rollout().default if engine.ready else None,
                     load_seconds=round(engine.load_seconds, 3),
                     convolutions=s.convolutions if s else None,
                     seconds_per_megapixel=round(engine.seconds_per_mp, 3),
                     presets=len(engine.registry.presets), store=engine.registry.store.backend, store_ok=store_ok,
                     store_detail=detail)
    return JSONResponse(body.model_dump(), status_code=200 if engine.ready else 503)


@router.get("/limits", response_model=Limits, summary="What the server accepts (sizes, pixels, styles, formats)")
async def limits(engine: AnyEngine) -> Limits:
    s = engine.settings
    return Limits(max_file_bytes=s.max_file_bytes, max_total_bytes=s.max_total_bytes,
                  max_image_pixels=s.max_image_pixels, max_output_pixels=s.max_output_pixels, max_styles=s.max_styles,
                  default_content_size=s.default_content_size, default_style_size=s.default_style_size,
                  formats=list(OUTPUT_FORMATS), input_formats=list(INPUT_FORMATS),
                  input_accept=[*INPUT_MEDIA_TYPES, *sorted(IMAGE_SUFFIXES)],
                  api_key_required=engine.tenants.required, page_style_ttl=s.page_style_ttl,
                  mask_aspect_tolerance=MASK_ASPECT_TOLERANCE, seconds_per_megapixel=round(engine.seconds_per_mp, 3),
                  max_video_bytes=s.max_video_bytes, max_video_seconds=s.max_video_seconds,
                  max_video_pixels=s.max_video_pixels)


@router.get("/models", response_model=ModelList, summary="The decoder versions a request may name (`decoder`), "
            "the default and the canary")
async def models(engine: ReadyEngine) -> ModelList:
    store = engine.decoders.store
    rollout = await asyncio.to_thread(store.rollout)
    versions = [ModelVersion(name=n, card=store.card(n)) for n in await asyncio.to_thread(store.names)]
    return ModelList(default=rollout.default, candidate=rollout.candidate, percent=rollout.percent, versions=versions)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(engine: AnyEngine) -> Response:
    return Response(engine.metrics.render(), media_type=CONTENT_TYPE_LATEST)
