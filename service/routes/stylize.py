"""POST /stylize: content + 1-8 styles (uploads and/or registered ids) -> streamed image."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile as StarletteUpload

from model.adain import COLOR_MATCH, MAX_COLOR_GAIN
from service.deps import State, require_api_key
from service.errors import BadRequest, TooLarge
from service.jobs import StylizeJob, StylizeResult, Upload, run_stylize
from service.schemas import ErrorBody
from service.state import AppState

router = APIRouter(tags=["stylize"], dependencies=[Depends(require_api_key)])

CHUNK = 64 * 1024
ERRORS = {code: {"model": ErrorBody, "description": text} for code, text in {
    400: "bad combination (e.g. a mask without exactly two styles, unknown style_id, bad weights)",
    401: "API key missing or wrong (only when the server requires keys)",
    413: "a file, the body, or an image's pixel count is over the limit",
    415: "an upload is not an image",
    422: "a field is malformed or out of range",
    503: "the server is busy: retry after the Retry-After header's seconds",
    504: "the request took longer than the server's timeout",
}.items()}


def upload_label(kind: str, upload: StarletteUpload) -> str:
    """How errors name an upload: "style #2 (painting.jpg)", the client's file name cut to 60
    characters (it is only ever echoed in messages, never used as a path)."""
    name = (upload.filename or "")[:60]
    return f"{kind} ({name})" if name else kind


async def read_upload(upload: StarletteUpload, label: str, state: AppState) -> Upload:
    limit = state.settings.max_file_bytes
    if upload.size is not None and upload.size > limit:
        raise TooLarge(f"{label} is {upload.size} bytes; the limit per file is {limit} (ADAIN_MAX_FILE_BYTES)")
    return Upload(label, await upload.read())


def parse_weights(values: list[str] | None) -> list[float] | None:
    """Weights as repeated fields and/or comma-separated: ["1", "3"] or ["1,3"]."""
    if not values:
        return None
    try:
        weights = [float(x) for v in values for x in v.split(",") if x.strip()]
    except ValueError:
        raise BadRequest(f"weights must be numbers, got {values}") from None
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise BadRequest(f"weights must be finite and >= 0, got {weights}")
    return weights or None


async def collect_styles(request: Request, state: AppState) -> list:
    """Style uploads and ids in the order the client sent the fields (that order pairs with weights
    and, with a mask, says which style is foreground)."""
    form = await request.form()  # already parsed by FastAPI: cached, not read twice
    styles: list = []
    for key, value in form.multi_items():
        if key == "style" and isinstance(value, StarletteUpload):
            styles.append(await read_upload(value, upload_label(f"style #{len(styles) + 1}", value), state))
        elif key == "style_id" and isinstance(value, str):
            entry = state.registry.get(value.strip())
            if entry is None:
                raise BadRequest(f"style_id {value!r} is not registered (GET /styles lists them)")
            styles.append(entry)
    if not styles:
        raise BadRequest("give at least one style: a 'style' file or a 'style_id'")
    if len(styles) > state.settings.max_styles:
        raise BadRequest(f"{len(styles)} styles given; at most {state.settings.max_styles} per request")
    return styles


async def until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_or_abandon(request: Request, state: AppState, job: StylizeJob) -> StylizeResult | None:
    """Run the job on the model queue; if the client disconnects first, cancel it and return None."""
    work = asyncio.ensure_future(state.queue.run(partial(run_stylize, state.stylizer, state.registry,
                                                         state.settings, job, batcher=state.batcher)))
    gone = asyncio.ensure_future(until_disconnect(request))
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():
        work.cancel()  # sets the job's cancel event; the worker stops at its next stage
        return None
    gone.cancel()
    return work.result()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    # An async generator: a sync one would cost a thread-pool hop per chunk.
    for i in range(0, len(data), CHUNK):
        yield data[i:i + CHUNK]


def image_response(result: StylizeResult) -> StreamingResponse:
    data = result.data
    timing = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in result.timings.items())
    return StreamingResponse(
        chunks(data),
        media_type=result.media_type,
        headers={"Content-Length": str(len(data)), "Server-Timing": timing,
                 "X-Image-Width": str(result.width), "X-Image-Height": str(result.height),
                 "X-Style-Cache-Hits": str(result.cache_hits), "Cache-Control": "no-store"},
    )


@router.post(
    "/stylize",
    summary="Stylize a content image with one or more styles",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
                     "description": "the stylized image, streamed; Server-Timing and X-Image-* headers"},
               **ERRORS},
)
async def stylize(
    request: Request,
    state: State,
    content: Annotated[UploadFile, File(description="the photo to re-render (PNG, JPEG, WebP, GIF, BMP, TIFF)")],
    style: Annotated[list[UploadFile] | None, File(
        description="style image(s), repeatable; together with style_id 1-8 styles in the order sent")] = None,
    style_id: Annotated[list[str] | None, Form(
        description="id of a registered or preset style (GET /styles), repeatable", examples=[["starry-night"]])] = None,
    weights: Annotated[list[str] | None, Form(
        description="one weight per style, >= 0, normalised to sum 1; repeated or comma-separated; "
                    "default equal", examples=[["1,3"]])] = None,
    alpha: Annotated[float, Form(ge=0.0, le=1.0, description="content-style trade-off: 0 = content, 1 = full style",
                                 examples=[0.8])] = 1.0,
    preserve_color: Annotated[bool, Form(description="keep the content's colours (style uploads only)")] = False,
    color_match: Annotated[float, Form(
        ge=0.0, le=1.0, description="how far the output's colours move towards the style's after decoding "
                                    "(times alpha): 0 = the paper's pipeline, 0.5 = the style's mean colour and half "
                                    f"its covariance, 1 = both (contrast stretched at most {MAX_COLOR_GAIN:g}x); default "
                                    f"{COLOR_MATCH}", examples=[COLOR_MATCH])] = COLOR_MATCH,
    mask: Annotated[UploadFile | None, File(
        description="binary mask with exactly 2 styles: white = first style, black = second; "
                    "same aspect ratio as the content")] = None,
    content_size: Annotated[int | None, Form(ge=0, le=16384, description="content shorter side in px, 0 = keep; "
                                             "default 512", examples=[512])] = None,
    style_size: Annotated[int | None, Form(ge=0, le=16384, description="style shorter side in px, 0 = keep; "
                                           "default 512", examples=[512])] = None,
    format: Annotated[Literal["png", "jpeg", "webp"], Form(description="output image format")] = "png",
) -> StreamingResponse:
    s = state.settings
    has_mask = mask is not None and (mask.size or 0) > 0  # browsers send an empty part for "no file"
    job = StylizeJob(
        content=await read_upload(content, "content", state),
        styles=await collect_styles(request, state),
        weights=parse_weights(weights),
        alpha=alpha,
        preserve_color=preserve_color,
        color_match=color_match,
        mask=await read_upload(mask, "mask", state) if has_mask else None,
        content_size=s.default_content_size if content_size is None else content_size,
        style_size=s.default_style_size if style_size is None else style_size,
        fmt=format,
    )
    result = await run_or_abandon(request, state, job)
    if result is None:  # nobody is listening; the status is only for the logs
        return StreamingResponse(iter(()), status_code=499)
    for stage, seconds in result.timings.items():
        state.metrics.stages.labels(stage).observe(seconds)
    return image_response(result)
