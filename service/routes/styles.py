"""Style registry routes: register an uploaded style (only its 4 KB code is kept), list, get, delete."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile

from service.deps import State, require_api_key
from service.errors import Forbidden, NotFound
from service.jobs import style_code
from service.registry import StyleEntry
from service.routes.stylize import ERRORS, read_upload, upload_label
from service.schemas import StyleInfo, StyleList

# Every operation can answer 401 (keys set) and 503 (model still loading).
router = APIRouter(prefix="/styles", tags=["styles"], dependencies=[Depends(require_api_key)],
                   responses={code: ERRORS[code] for code in (401, 503)})


def info(entry: StyleEntry) -> StyleInfo:
    return StyleInfo(id=entry.id, name=entry.name, kind=entry.kind, style_size=entry.style_size,
                     created=datetime.fromtimestamp(entry.created, timezone.utc),
                     thumbnail_url=f"/styles/{entry.id}/thumbnail" if entry.thumbnail else None)


def lookup(state: State, style_id: str) -> StyleEntry:
    entry = state.registry.get(style_id)
    if entry is None:
        raise NotFound(f"no style with id {style_id!r} (it may have been evicted: register it again)")
    return entry


@router.post("", status_code=201, response_model=StyleInfo, responses=ERRORS,
             summary="Register a style image; answers its id for use as style_id")
async def register_style(
    state: State,
    style: Annotated[UploadFile, File(description="the style image (painting, texture ...)")],
    name: Annotated[str | None, Form(max_length=100, description="a label for listings", examples=["my watercolour"])] = None,
    style_size: Annotated[int | None, Form(ge=0, le=16384, description="shorter side in px to encode at, 0 = keep; "
                                           "default 512", examples=[512])] = None,
) -> StyleInfo:
    size = state.settings.default_style_size if style_size is None else style_size
    upload = await read_upload(style, upload_label("style", style), state)
    job = partial(style_code, state.stylizer, state.registry, state.settings, upload, size, name, True)
    entry, _ = await state.queue.run(lambda cancel: job())
    return info(entry)


@router.get("", response_model=StyleList, summary="Registered and preset styles")
async def list_styles(state: State) -> StyleList:
    return StyleList(styles=[info(e) for e in state.registry.listed()])


@router.get("/{style_id}", response_model=StyleInfo, responses={404: ERRORS.get(404, {"description": "unknown id"})})
async def get_style(state: State, style_id: str) -> StyleInfo:
    return info(lookup(state, style_id))


@router.get("/{style_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "unknown id or no thumbnail"}})
async def style_thumbnail(state: State, style_id: str) -> Response:
    entry = lookup(state, style_id)
    if entry.thumbnail is None:
        raise NotFound("only preset styles have thumbnails (uploaded images are never stored)")
    return Response(entry.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})


@router.delete("/{style_id}", status_code=204, responses={404: {"description": "unknown id"},
                                                          403: {"description": "presets cannot be deleted"}})
async def delete_style(state: State, style_id: str) -> Response:
    entry = lookup(state, style_id)
    if entry.kind == "preset":
        raise Forbidden(f"{style_id!r} is a preset; presets come from the server's presets folder")
    state.registry.delete(style_id)
    return Response(status_code=204)
