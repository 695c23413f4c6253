"""Live streams: a camera's frames in over a WebSocket, stylized frames out, as fast as the model
goes and never behind.

The client sends a JSON text message of settings (``/stylize``'s field names: ``style_id``, one
or a list, ``weights``, ``alpha``, ``color_match``, ``content_size``; also ``stabilize`` and,
since a browser cannot set headers on a WebSocket, ``api_key``), then binary JPEG or WebP frames;
a new JSON message changes the settings mid-stream. Each connection holds one waiting slot:
a frame that arrives while another waits replaces it (latest frame wins: no backlog, memory of
one frame), so the answer to the last frame sent comes one frame time plus processing after it.
Frames go through the model queue like image requests, one per stream at a time, so streams and
``/stylize`` share the model first come, first served. About once a second the server sends a
status message (frames/s, latency p50, frames received, answered and dropped)."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections import deque
from typing import Any

import numpy as np
from PIL import Image
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.websockets import WebSocketState

from model.adain import COLOR_MATCH, mix, normalise_weights
from model.errors import InputError
from model.images import encode_image, open_image, resize_shorter
from model.plan import Options
from model.temporal import Stabilizer
from model.video import Frames
from service.deps import key_matches
from service.errors import BadRequest, Busy, ServiceError, TimedOut
from service.stores import StoreDown

log = logging.getLogger("adain.live")
TRY_AGAIN_LATER, POLICY, GOING_AWAY = 1013, 1008, 1001  # WebSocket close codes
JPEG_QUALITY = 85  # answers are for a screen, many times a second


class LiveSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    style_id: list[str] = Field(min_length=1)
    weights: list[float] | None = None
    alpha: float = 1.0
    color_match: float = COLOR_MATCH
    content_size: int = Field(256, ge=16)
    stabilize: bool = True
    api_key: str | None = None

    @field_validator("style_id", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("weights", mode="before")
    @classmethod
    def _commas(cls, v: Any) -> Any:
        return [x for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class Stream:
    def __init__(self, engine: Any, ws: WebSocket) -> None:
        self.engine, self.ws, self.s = engine, ws, engine.settings
        self.frames: Frames | None = None  # the current settings, ready to render
        self.size = 0
        self.authorized = not self.s.api_keys or key_matches(self.s.api_keys, ws.headers.get("x-api-key"))
        self.pending: tuple[bytes, float] | None = None  # the one frame waiting
        self.wake = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.received = self.answered = self.dropped = 0
        self.latencies: deque[float] = deque(maxlen=120)
        self.answer_times: deque[float] = deque(maxlen=120)
        self.last_frame_at = 0.0

    async def send_json(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(message))

    async def error(self, detail: str) -> None:
        await self.send_json({"type": "error", "detail": detail})

    async def run(self) -> None:
        """Serve the connection until it closes; refused (1013) when the server is loading or
        already serves ``ADAIN_MAX_STREAMS``."""
        await self.ws.accept()
        if not self.engine.ready or self.engine.streams >= self.s.max_streams:
            why = "the model is still loading" if not self.engine.ready else \
                f"{self.engine.streams} live streams are open, the most this server takes"
            await self.close(TRY_AGAIN_LATER, f"{why}; try again shortly")
            return
        self.engine.streams += 1
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
            self.engine.streams -= 1

    async def close(self, code: int, detail: str) -> None:
        if self.ws.client_state == WebSocketState.CONNECTED:
            await self.error(detail)
            await self.ws.close(code)

    # receiving: settings and frames, the newest frame in the one slot

    async def _receive(self) -> None:
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), self.s.stream_idle_seconds)
            except asyncio.TimeoutError:
                await self.close(GOING_AWAY, f"nothing received for {self.s.stream_idle_seconds:g} s; closing")
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                if not await self._settings(message["text"]):
                    return
            elif message.get("bytes") is not None:
                self._frame(message["bytes"])

    async def _settings(self, text: str) -> bool:
        """Apply a settings message; False when the stream must end (a wrong key)."""
        try:
            settings = LiveSettings.model_validate(json.loads(text))
        except (ValueError, ValidationError) as e:
            await self.error(f"settings: {_why(e)}")
            return True
        if not self.authorized:
            self.authorized = key_matches(self.s.api_keys, settings.api_key)
            if not self.authorized:
                await self.close(POLICY, "missing or wrong API key: send it as api_key in the settings")
                return False
        try:
            self.frames, self.size = await asyncio.to_thread(self._prepare, settings), settings.content_size
        except (InputError, ServiceError) as e:
            await self.error(f"settings: {e.detail if isinstance(e, ServiceError) else e}")
            return True
        await self.send_json({"type": "ready", "content_size": settings.content_size,
                              "styles": settings.style_id, "stabilize": settings.stabilize})
        return True

    def _prepare(self, settings: LiveSettings) -> Frames:
        self.engine.check_style_count(len(settings.style_id))
        if settings.content_size ** 2 > self.s.max_stream_pixels:
            raise BadRequest(f"content_size {settings.content_size} is too large for a stream: frames up to "
                             f"{self.s.max_stream_pixels} pixels")
        options = Options(alpha=settings.alpha, color_match=settings.color_match, content_size=0)
        codes = [self.engine.registered(i).code for i in settings.style_id]
        code = mix(codes, normalise_weights(settings.weights, len(codes)))
        return Frames(self.engine.stylizer, [code], options, Stabilizer() if settings.stabilize else None)

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

    # working: one frame at a time through the model queue

    async def _work(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.pending is None:
                continue
            (data, arrived), self.pending = self.pending, None
            frames, size, number = self.frames, self.size, self.received
            try:
                out = await self.engine.queue.run(lambda cancel: self._render(frames, size, data), timeout=10)
            except (Busy, TimedOut):
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

    def _render(self, frames: Frames, size: int, data: bytes) -> bytes:
        img = open_image(data, max_pixels=self.s.max_stream_pixels)
        rgb = np.asarray(resize_shorter(img, size))
        return encode_image(Image.fromarray(frames(rgb)), "jpeg", jpeg_quality=JPEG_QUALITY)

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
