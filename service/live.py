"""Live streams: a camera's frames in over a WebSocket, stylized frames out, as fast as the model
goes and never behind.

The client sends a JSON text message of settings (``/stylize``'s field names: ``style_id``, one
or a list, ``weights``, ``alpha``, ``color_match``, ``content_size``; also ``stabilize`` and,
since a browser cannot set headers on a WebSocket, ``api_key``), then binary JPEG or WebP frames;
a new JSON message changes the settings mid-stream. Each connection holds one waiting slot:
a frame that arrives while another waits replaces it (latest frame wins: no backlog, memory of
one frame), so the answer to the last frame sent comes one frame time plus processing after it.
Each frame is one piece of work in the model queue, in the stream's tenant's turns (service.queue),
one per stream at a time. About once a second the server sends a status message (frames/s,
latency p50, frames received, answered and dropped).

This module is the protocol only: who is calling, stream places, styles and rendering are the
engine's (``Engine.caller``, ``open_stream``, ``stream_frames``, ``render_frame``)."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections import deque
from contextlib import ExitStack
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from model.errors import InputError
from model.video import Frames
from service.engine import Engine
from service.errors import Busy, ServiceError, TimedOut, TooManyRequests, Unauthorized
from service.forms import LiveSettings
from service.stores import StoreDown
from service.tenants import Caller

log = logging.getLogger("adain.live")
TRY_AGAIN_LATER, POLICY, GOING_AWAY = 1013, 1008, 1001  # WebSocket close codes


class Stream:
    def __init__(self, engine: Engine, ws: WebSocket, caller: Caller | None) -> None:
        self.engine, self.ws, self.s = engine, ws, engine.settings
        self.given = caller  # from the handshake's header, if it had a good key
        self.caller: Caller | None = None  # once counted and holding its places
        self.frames: Frames | None = None  # the current settings, ready to render
        self.size = 0
        self.pending: tuple[bytes, float] | None = None  # the one frame waiting
        self.wake = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.received = self.answered = self.dropped = 0
        self.latencies: deque[float] = deque(maxlen=120)
        self.answer_times: deque[float] = deque(maxlen=120)
        self.last_frame_at = 0.0
        self.places = ExitStack()  # the stream's places (the replica's, its tenant's), held while it is open
        self.anonymous = ExitStack()  # its place among sockets not yet saying who they are

    async def send_json(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(message))

    async def error(self, detail: str) -> None:
        await self.send_json({"type": "error", "detail": detail})

    async def run(self) -> None:
        """Serve the connection until it closes; refused (1013) when the server is loading or has
        no stream place left for this tenant."""
        await self.ws.accept()
        try:
            self.engine.check_stream_room()  # no place for anyone: said at once, before any settings
        except Busy as e:
            await self.close(TRY_AGAIN_LATER, e.detail)
            return
        if self.given is not None:
            if not await self._enter(self.given):
                return
        else:
            try:
                self.anonymous.enter_context(self.engine.anonymous_stream())
            except Busy as e:
                await self.close(TRY_AGAIN_LATER, e.detail)
                return
        worker = status = None
        try:
            worker, status = asyncio.create_task(self._work()), asyncio.create_task(self._report())
            await self._receive()
        except WebSocketDisconnect:
            pass
        finally:
            for task in (worker, status):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*[t for t in (worker, status) if t], return_exceptions=True)
            self.anonymous.close()
            self.places.close()

    async def _enter(self, caller: Caller) -> bool:
        """Count the stream against the caller's rate and take its places; False (closed) if not."""
        try:
            await self.engine.admit(caller, self.ws.scope.setdefault("state", {}))
            self.places.enter_context(self.engine.open_stream(caller))
        except (Busy, TooManyRequests) as e:
            await self.close(TRY_AGAIN_LATER, e.detail)
            return False
        self.caller = caller
        self.anonymous.close()
        return True

    async def close(self, code: int, detail: str) -> None:
        if self.ws.client_state == WebSocketState.CONNECTED:
            await self.error(detail)
            await self.ws.close(code)

    # receiving: settings and frames, the newest frame in the one slot

    async def _receive(self) -> None:
        hello_by = time.monotonic() + self.s.stream_hello_seconds  # from connecting, however chatty
        while True:
            known = self.caller is not None
            try:
                message = await asyncio.wait_for(self.ws.receive(), self.s.stream_idle_seconds if known
                                                 else max(0.0, hello_by - time.monotonic()))
            except asyncio.TimeoutError:
                if known:
                    await self.close(GOING_AWAY, f"nothing received for {self.s.stream_idle_seconds:g} s; closing")
                else:
                    await self.close(POLICY, f"no settings with an API key within {self.s.stream_hello_seconds:g} s "
                                             "of connecting; closing")
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                if not await self._settings(message["text"]):
                    return
            elif message.get("bytes") is not None:
                self._frame(message["bytes"])

    async def _settings(self, text: str) -> bool:
        """Apply a settings message; False when the stream must end (a wrong key, no place)."""
        try:
            settings = LiveSettings.model_validate(json.loads(text))
        except (ValueError, ValidationError) as e:
            await self.error(f"settings: {_why(e)}")
            return True
        if self.caller is None:  # the key comes with the first settings message
            try:
                caller = self.engine.caller(settings.api_key)
            except Unauthorized:
                await self.close(POLICY, "missing or wrong API key: send it as api_key in the settings")
                return False
            if not await self._enter(caller):
                return False
        try:
            frames = await asyncio.to_thread(self.engine.stream_frames, self.caller, settings)
        except (InputError, ServiceError) as e:
            await self.error(f"settings: {e.detail if isinstance(e, ServiceError) else e}")
            return True
        self.frames, self.size = frames, settings.content_size
        await self.send_json({"type": "ready", "content_size": settings.content_size,
                              "styles": settings.style_id, "stabilize": settings.stabilize})
        return True

    def _frame(self, data: bytes) -> None:
        now = time.monotonic()
        self.received += 1
        if self.frames is None:
            asyncio.ensure_future(self.error("send the settings (a JSON text message) before frames"))
            return
        if len(data) > self.s.max_stream_frame_bytes or now - self.last_frame_at < 1 / self.s.stream_max_fps:
            self.dropped += 1  # too big is also said to the client; too fast is simply dropped
            if len(data) > self.s.max_stream_frame_bytes:
                asyncio.ensure_future(self.error(f"frame {self.received}: {len(data)} bytes; the limit is "
                                                 f"{self.s.max_stream_frame_bytes}"))
            return
        self.last_frame_at = now
        if self.pending is not None:
            self.dropped += 1  # the waiting frame is stale: the newest wins
        self.pending = (data, now)
        self.wake.set()

    # working: one frame at a time through the model queue, in the tenant's turns

    async def _work(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.pending is None or self.caller is None:
                continue
            (data, arrived), self.pending = self.pending, None
            frames, size, number = self.frames, self.size, self.received
            try:
                out = await self.engine.render_frame(self.caller, frames, size, data)
            except (Busy, TooManyRequests, TimedOut):
                self.dropped += 1
                continue
            except (InputError, ServiceError, StoreDown) as e:
                await self.error(f"frame {number}: {e.detail if isinstance(e, ServiceError) else e}")
                continue
            except Exception:  # a bug: logged, said, and the stream goes on with the next frame
                log.exception("live stream: frame %d failed", number)
                await self.error(f"frame {number}: internal error; it has been logged")
                continue
            async with self.send_lock:
                await self.ws.send_bytes(out)
            now = time.monotonic()
            self.answered += 1
            self.latencies.append(now - arrived)
            self.answer_times.append(now)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            fps = sum(1 for t in self.answer_times if now - t <= 1.0)
            p50 = statistics.median(self.latencies) * 1000 if self.latencies else None
            await self.send_json({"type": "status", "fps": fps, "latency_ms_p50": p50 and round(p50, 1),
                                  "frames_received": self.received, "frames_answered": self.answered,
                                  "frames_dropped": self.dropped})


def _why(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'message'}: {err['msg']}" for err in e.errors())
    return f"not JSON ({e})"
