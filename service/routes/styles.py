"""Style registry routes: register an uploaded style (its 4 KB code and a small thumbnail are
kept), list, get, its thumbnail, delete."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from starlette.requests import HTTPConnection

from service.deps import CurrentCaller, ReadyEngine, StyleFormDep, current_caller, header_key
from service.errors import NotFound, responses
from service.limits import queues_for
from service.forms import StyleForm, request_body
from service.stores import StyleEntry
from service.schemas import StyleInfo, StyleList

# Every operation can answer 401 (keys set), 429 (the tenant's rate) and 503 (model still loading,
# or the style store down). Another tenant's style answers exactly as an unknown id.
router = APIRouter(prefix="/styles", tags=["styles"], responses=responses(401, 429, 503))


def utc(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc)


def info(entry: StyleEntry) -> StyleInfo:
    return StyleInfo(id=entry.id, name=entry.name, kind=entry.kind, style_size=entry.style_size,
                     created=utc(entry.created), expires=utc(entry.expires),
                     tenant=None if entry.kind == "preset" else entry.owner,
                     thumbnail_url=f"/styles/{entry.id}/thumbnail" if entry.thumbnail else None)


@router.post("", status_code=201, response_model=StyleInfo, openapi_extra=request_body(StyleForm),
             responses=responses(400, 413, 415, 422, 504, 507),
             summary="Register a style image as the caller's; answers its id for use as style_id")
@queues_for("model")
async def register_style(engine: ReadyEngine, caller: CurrentCaller, form: StyleFormDep) -> StyleInfo:
    return info(await engine.register(caller, form))


@router.get("", response_model=StyleList, responses={**responses(422), 403: {"description": "tenant= by a user"}},
            summary="Presets, then the caller's registered styles in registration order, a page at a time")
async def list_styles(
    engine: ReadyEngine,
    caller: CurrentCaller,
    limit: Annotated[int, Query(ge=1, le=500, description="styles per page")] = 100,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
    tenant: Annotated[str | None, Query(max_length=64, description="admins: only this tenant's styles (without "
                                        "it an admin lists every tenant's)")] = None,
) -> StyleList:
    entries, next_cursor = await engine.styles(caller, limit, cursor, tenant)
    return StyleList(styles=[info(e) for e in entries], next_cursor=next_cursor)


@router.get("/{style_id}", response_model=StyleInfo, responses=responses(404))
async def get_style(engine: ReadyEngine, caller: CurrentCaller, style_id: str) -> StyleInfo:
    return info(await engine.style(caller, style_id))


@router.get("/{style_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, **responses(404)},
            summary="A style's small JPEG: a preset's needs no key (an <img> can show it); a registered "
                    "style's is its tenant's, like the style (ADAIN_KEEP_STYLE_THUMBNAILS)")
async def style_thumbnail(conn: HTTPConnection, engine: ReadyEngine, style_id: str,
                          key: Annotated[str | None, Depends(header_key)] = None) -> Response:
    preset = engine.registry.presets.get(style_id)
    if preset is not None and preset.thumbnail is not None:
        return Response(preset.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})
    entry = await engine.style(await current_caller(conn, engine, key), style_id)  # the one access check
    if entry.thumbnail is None:
        raise NotFound(f"style {style_id!r} has no thumbnail (registered with ADAIN_KEEP_STYLE_THUMBNAILS off)")
    return Response(entry.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/{style_id}", status_code=204,
               responses={**responses(404), 403: {"description": "presets cannot be deleted"}})
async def delete_style(engine: ReadyEngine, caller: CurrentCaller, style_id: str) -> Response:
    await engine.delete(caller, style_id)
    return Response(status_code=204)
