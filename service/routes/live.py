"""GET /ws/stylize: a live stream over a WebSocket (service/live.py has the protocol)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from service.deps import AnyEngine, StreamCaller
from service.live import Stream

router = APIRouter()


@router.websocket("/ws/stylize")
async def live(ws: WebSocket, engine: AnyEngine, caller: StreamCaller) -> None:
    await Stream(engine, ws, caller).run()
