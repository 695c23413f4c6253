"""The service layer: everything the routes ask of the model, the style registry and the queue.

``Engine`` is built once per app from the Settings; ``load`` (at startup) loads the weights once,
warms up and encodes the presets. Its request methods take parsed forms and return results; the
model work runs on the queue's worker threads, never on the event loop. Every image goes one
way: uploads decoded once (``service.uploads``), styles encoded through the cache,
``Stylizer.prepare`` makes the plan and ``Stylizer.render`` draws it (through the micro-batcher
when it is on)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import torch
from PIL import Image

from model.adain import StyleCode
from model.images import OUTPUT_FORMATS, encode_image, png_chunks, scaled_size
from model.plan import Options
from model.stylizer import Stylizer
from model.tiling import needs_tiles
from service.batching import Batcher
from service.errors import BadRequest, Cancelled, Forbidden, NotFound
from service.forms import StyleFields, StyleForm, StylizeForm, VideoForm
from service.metrics import Metrics
from service.queue import ModelQueue
from service.registry import StyleRegistry
from service.settings import Settings
from service.stores import StoreDown, StyleEntry, VideoJob, open_job_store, open_style_store
from service.uploads import Upload, declared_size, decode
from service.videos import VideoJobs

log = logging.getLogger("adain.service")


@dataclass
class StylizeResult:
    data: bytes | Iterator[bytes]  # a large PNG comes as pieces, encoded as they are sent
    media_type: str
    width: int
    height: int
    cache_hits: int
    timings: dict[str, float] = field(default_factory=dict)


class Timer:
    """Collects stage durations for the Server-Timing header; checks for cancellation between stages."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.cancel.is_set():
            raise Cancelled()
        start = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


class Engine:
    def __init__(self, settings: Settings, stylizer: Stylizer | None = None) -> None:
        self.settings = settings
        self.stylizer = stylizer
        self.metrics = Metrics(self.live_values)
        self.registry = StyleRegistry(open_style_store(settings, self.metrics.store_call), settings.style_cache_size)
        self.queue = ModelQueue(settings.workers, settings.queue_depth, settings.request_timeout)
        self.videos = VideoJobs(settings, open_job_store(settings))
        self.batcher: Batcher | None = None
        self.streams = 0  # live WebSocket streams open (service/live.py)
        self.ready = False
        self.load_seconds = 0.0

    # lifetime

    def load(self) -> None:
        """Load weights once (unless injected), warm up, encode presets; then ready."""
        s = self.settings
        start = time.perf_counter()
        if s.torch_threads:
            torch.set_num_threads(s.torch_threads)
        if self.stylizer is None:
            self.stylizer = Stylizer.load(s.decoder, vgg_path=s.vgg, device=s.device, precision=s.precision,
                                          tile=s.tile_size, backend=s.backend,
                                          onnx_dir=s.onnx_dir or s.state_dir / "onnx")
        if s.warmup:
            self.stylizer.warmup()
        if s.batch_max > 1:
            self.batcher = Batcher(self.stylizer.render, s.batch_max, s.batch_wait_ms / 1000,
                                   on_batch=self.metrics.batch_size.observe)
        n = self.registry.load_presets(
            s.presets_dir, lambda img: self.stylizer.encode_style(img, s.default_style_size), s.default_style_size)
        self.videos.start(self.stylizer)
        self.load_seconds = time.perf_counter() - start
        self.ready = True
        log.info("ready in %.2f s on %s/%s (%s) with %d presets (decoder %s, %s style store)", self.load_seconds,
                 self.stylizer.device, self.stylizer.precision, self.stylizer.backend, n, s.decoder,
                 self.registry.store.backend)

    def close(self) -> None:
        self.ready = False
        self.videos.close()
        self.queue.shutdown()
        if self.batcher is not None:
            self.batcher.close()
        self.registry.store.close()

    async def store_state(self) -> tuple[bool, str | None]:
        """(reachable, why not) of the style store, for /readyz."""
        try:
            await asyncio.to_thread(self.registry.store.ping)
            return True, None
        except StoreDown as e:
            return False, e.detail

    def live_values(self) -> dict[str, float]:
        return {
            "queue_depth": self.queue.waiting, "in_flight": self.queue.in_flight,
            "cache_hits": self.registry.hits, "cache_misses": self.registry.misses,
            "cache_entries": len(self.registry), "load_seconds": self.load_seconds, "ready": float(self.ready),
            "video_jobs": self.videos.active - self.videos.waiting, "video_jobs_waiting": self.videos.waiting,
            "live_streams": self.streams,
        }

    # requests

    async def stylize(self, form: StylizeForm) -> StylizeResult:
        options = form.options(self.settings)
        styles = await self._styles(form)
        result = await self.queue.run(partial(self._stylize, form, options, styles), self._timeout(form, options))
        for stage, seconds in result.timings.items():
            self.metrics.stages.labels(stage).observe(seconds)
        return result

    async def submit_video(self, form: VideoForm) -> VideoJob:
        try:
            styles = await self._styles(form)
        except BaseException:
            form.video.path.unlink(missing_ok=True)
            raise
        return await self.videos.submit(form, styles)

    async def _styles(self, form: StyleFields) -> list[Upload | StyleEntry]:
        """The form's styles in order, ids looked up (400 for none, too many or an unknown id)."""
        given = form.styles
        self.check_style_count(len(given))
        if not any(isinstance(s, str) for s in given):
            return given  # type: ignore[return-value]
        # the store may be remote: off the event loop
        return await asyncio.to_thread(lambda: [self.registered(s) if isinstance(s, str) else s for s in given])

    def _timeout(self, form: StylizeForm, options: Options) -> float:
        """The queue's deadline, longer for a large output (its size read from the upload's header)."""
        s, size = self.settings, declared_size(form.content)
        if size is None:
            return s.request_timeout
        w, h = scaled_size(size, options.content_size)
        return max(s.request_timeout, w * h / 1e6 * s.timeout_per_megapixel)

    async def register(self, form: StyleForm) -> StyleEntry:
        size = form.options(self.settings).style_size
        encode = self._encoder(form.style, size)
        return await self.queue.run(lambda cancel: self.registry.register(form.style.data, size, encode, form.name))

    async def style(self, style_id: str) -> StyleEntry:
        entry = await asyncio.to_thread(self.registry.get, style_id)
        if entry is None:
            raise NotFound(f"no style with id {style_id!r}")
        return entry

    async def styles(self, limit: int, cursor: str | None) -> tuple[list[StyleEntry], str | None]:
        return await asyncio.to_thread(self.registry.page, limit, cursor)

    async def delete(self, style_id: str) -> None:
        if style_id in self.registry.presets:
            raise Forbidden(f"{style_id!r} is a preset; presets come from the server's presets folder")
        if not await asyncio.to_thread(self.registry.delete, style_id):
            raise NotFound(f"no style with id {style_id!r}")

    def check_style_count(self, n: int) -> None:
        """400 for no style or more than ADAIN_MAX_STYLES (requests, video jobs, live settings)."""
        if not n:
            raise BadRequest("give at least one style: a 'style' file or a 'style_id'")
        if n > self.settings.max_styles:
            raise BadRequest(f"{n} styles given; at most {self.settings.max_styles} per request")

    def registered(self, style_id: str) -> StyleEntry:
        entry = self.registry.get(style_id.strip())
        if entry is None:
            raise BadRequest(f"style_id {style_id!r} is not registered (GET /styles lists them)")
        return entry

    # on a worker thread

    def _encoder(self, upload: Upload, style_size: int) -> Callable[[], StyleCode]:
        """Encoding a style upload (decoded within the limits), for the registry to call on a miss."""
        return lambda: self.stylizer.encode_style(decode(upload, self.settings, style_size), style_size)

    def _stylize(self, form: StylizeForm, options: Options, styles: list[Upload | StyleEntry],
                 cancel: threading.Event) -> StylizeResult:
        s, t, hits = self.settings, Timer(cancel), 0
        with t.stage("decode"):
            content = decode(form.content, s, options.content_size)
            mask = decode(form.mask, s, None) if form.mask is not None else None
        sources: list[Image.Image | StyleCode] = []
        for style in styles:
            with t.stage("encode-style"):
                if isinstance(style, StyleEntry):
                    sources.append(style.code)
                elif options.preserve_color:  # recoloured to this content: nothing to cache
                    sources.append(decode(style, s, options.style_size))
                else:  # an inline upload: through the cache (bytes + style size)
                    code, hit = self.registry.code(style.data, options.style_size,
                                                   self._encoder(style, options.style_size))
                    sources.append(code)
                    hits += hit
        with t.stage("stylize"):
            plan = self.stylizer.prepare(content, sources, options, mask)
            # a tiled image renders alone (minutes at 8K): it would hold every batch behind it
            tiled = needs_tiles(plan.size, self.stylizer.tile)
            out = self.batcher.submit(plan) if self.batcher and not tiled else self.stylizer.render([plan])[0]
        with t.stage("encode-image"):
            if form.format == "png" and tiled:
                data: bytes | Iterator[bytes] = png_chunks(out, s.png_compress_level)  # encoded while sent
            else:
                data = encode_image(out, form.format, png_level=s.png_compress_level,
                                    jpeg_quality=s.jpeg_quality, webp_quality=s.webp_quality)
        return StylizeResult(data, OUTPUT_FORMATS[form.format][1], out.width, out.height, hits, t.timings)
