"""POST /stylize: content + 1-8 styles (uploads and/or registered ids) -> streamed image."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.deps import CurrentCaller, PreviewFormDep, ReadyEngine, StylizeFormDep
from service.engine import StylizeResult
from service.errors import responses
from service.limits import queues_for
from service.forms import PreviewForm, StylizeForm, request_body

router = APIRouter(tags=["stylize"])

CHUNK = 64 * 1024
T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Await ``work``; if the client disconnects first, cancel it (the queue then sets the job's
    cancel event and the worker stops at its next stage) and return None."""
    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(gone())
    await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        return None
    watch.cancel()
    return task.result()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    # An async generator: a sync one would cost a thread-pool hop per chunk.
    for i in range(0, len(data), CHUNK):
        yield data[i:i + CHUNK]


def image_response(result: StylizeResult) -> StreamingResponse:
    timing = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in result.timings.items())
    if result.model_version:  # which decoder drew it, beside how long each stage took
        timing += f', decoder;desc="{result.model_version}"'
    headers = {"Server-Timing": timing, "X-Image-Width": str(result.width), "X-Image-Height": str(result.height),
               "X-Style-Cache-Hits": str(result.cache_hits), "Cache-Control": "no-store"}
    if result.model_version:
        headers["X-Model-Version"] = result.model_version
    if result.content_id:
        headers |= {"X-Content-Id": result.content_id, "X-Content-Cache": result.content_cache}
    if isinstance(result.data, bytes):
        headers["Content-Length"] = str(len(result.data))
        return StreamingResponse(chunks(result.data), media_type=result.media_type, headers=headers)
    # a large PNG: encoded piece by piece on a thread as it is sent (chunked; no length known ahead)
    return StreamingResponse(result.data, media_type=result.media_type, headers=headers)


@router.post(
    "/stylize",
    summary="Stylize a content image with one or more styles",
    response_class=StreamingResponse,
    openapi_extra=request_body(StylizeForm),
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
                     "description": "the stylized image, streamed; Server-Timing and X-Image-* headers"},
               **responses(400, 401, 413, 415, 422, 429, 503, 504)},
)
@queues_for("model")
async def stylize(request: Request, engine: ReadyEngine, caller: CurrentCaller,
                  form: StylizeFormDep) -> StreamingResponse:
    result = await unless_disconnected(request, engine.stylize(caller, form))
    if result is None:  # nobody is listening; the status is only for the logs
        return StreamingResponse(iter(()), status_code=499)
    return image_response(result)


@router.post(
    "/preview",
    summary="A small JPEG of an image as the service reads it (for pages that cannot draw HEIC or TIFF)",
    response_class=StreamingResponse,
    openapi_extra=request_body(PreviewForm),
    responses={200: {"content": {"image/jpeg": {}},
                     "description": "at most 512 px a side, EXIF orientation applied; X-Image-Width and "
                                    "X-Image-Height give the image's full size"},
               **responses(400, 401, 413, 415, 422, 429, 503)},
)
@queues_for("model")
async def preview(engine: ReadyEngine, caller: CurrentCaller, form: PreviewFormDep) -> StreamingResponse:
    return image_response(await engine.preview(caller, form))
