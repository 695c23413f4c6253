"""Style registry routes: register an uploaded style (only its 4 KB code is kept), list, get, delete."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from service.deps import ReadyEngine, StyleForm, require_api_key
from service.errors import NotFound, responses
from service.forms import StyleForm as Form, request_body
from service.stores import StyleEntry
from service.schemas import StyleInfo, StyleList

# Every operation can answer 401 (keys set) and 503 (model still loading, or the style store down).
router = APIRouter(prefix="/styles", tags=["styles"], dependencies=[Depends(require_api_key)],
                   responses=responses(401, 503))


def info(entry: StyleEntry) -> StyleInfo:
    return StyleInfo(id=entry.id, name=entry.name, kind=entry.kind, style_size=entry.style_size,
                     created=datetime.fromtimestamp(entry.created, timezone.utc),
                     thumbnail_url=f"/styles/{entry.id}/thumbnail" if entry.thumbnail else None)


@router.post("", status_code=201, response_model=StyleInfo, openapi_extra=request_body(Form),
             responses=responses(400, 413, 415, 422, 504, 507),
             summary="Register a style image; answers its id for use as style_id")
async def register_style(engine: ReadyEngine, form: StyleForm) -> StyleInfo:
    return info(await engine.register(form))


@router.get("", response_model=StyleList, responses=responses(422),
            summary="Preset, then registered styles in registration order, a page at a time")
async def list_styles(
    engine: ReadyEngine,
    limit: Annotated[int, Query(ge=1, le=500, description="styles per page")] = 100,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> StyleList:
    entries, next_cursor = await engine.styles(limit, cursor)
    return StyleList(styles=[info(e) for e in entries], next_cursor=next_cursor)


@router.get("/{style_id}", response_model=StyleInfo, responses=responses(404))
async def get_style(engine: ReadyEngine, style_id: str) -> StyleInfo:
    return info(await engine.style(style_id))


@router.get("/{style_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, **responses(404)})
async def style_thumbnail(engine: ReadyEngine, style_id: str) -> Response:
    entry = await engine.style(style_id)
    if entry.thumbnail is None:
        raise NotFound("only preset styles have thumbnails (uploaded images are never stored)")
    return Response(entry.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})


@router.delete("/{style_id}", status_code=204,
               responses={**responses(404), 403: {"description": "presets cannot be deleted"}})
async def delete_style(engine: ReadyEngine, style_id: str) -> Response:
    await engine.delete(style_id)
    return Response(status_code=204)
