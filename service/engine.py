"""The service layer: everything the routes and streams ask of the model, the style registry and
the queue.

``Engine`` is built once per app from the Settings; ``load`` (at startup) loads the weights once,
warms up and encodes the presets. Its request methods take the caller and parsed forms and return
results; the model work runs on the queue's threads in the caller's turns, never on the event
loop. Every image goes one way: uploads decoded once (``service.uploads``), styles encoded through
the cache, ``Stylizer.prepare`` makes the plan and ``Stylizer.render`` draws it (through the
micro-batcher when it is on; a large image a tile per turn)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import contextmanager
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np

import torch
from PIL import Image

from model.adain import StyleCode, mix, normalise_weights
from model.images import (OUTPUT_FORMATS, encode_image, open_image, png_chunks, resize_shorter, scaled_size,
                          small_jpeg)
from model.plan import ContentFeatures, Options, check_combination
from model.stylizer import Stylizer
from model.temporal import Stabilizer
from model.video import Frames
from service import context
from service.batching import Batcher
from service.contents import content_cache, content_id, content_key
from service.decoders import Decoders, ModelStore
from service.errors import (BadRequest, Busy, Cancelled, ContentGone, Forbidden, NotFound, ServiceError,
                            TooManyRequests, Unauthorized)
from service.forms import LiveSettings, PreviewForm, StyleFields, StyleForm, StylizeForm, VideoForm
from service.metrics import Metrics
from service.limits import Budget
from service.queue import ModelQueue, Turn
from service.ratelimit import RateLimiter
from service.registry import StyleRegistry
from service.settings import Settings
from service.stores import StoreDown, StyleEntry, VideoJob, open_job_store, open_style_store
from service.tenants import Caller, Tenants
from service.uploads import Upload, check_declared, check_size, declared_size, decode
from service.videos import VideoJobs

log = logging.getLogger("adain.service")
T = TypeVar("T")
STREAM_JPEG_QUALITY = 85  # stream answers are for a screen, many times a second
STREAM_FRAME_TIMEOUT = 10.0  # s; a frame later than this is dropped, the stream goes on
THUMBNAIL_SIDE = 128  # px: a registered style's picture on a page (a few KB as JPEG)
PREVIEW_SIDE = 512  # px: what a page shows of a photo it cannot draw itself


@dataclass
class StylizeResult:
    data: bytes | Iterator[bytes]  # a large PNG comes as pieces, encoded as they are sent
    media_type: str
    width: int
    height: int
    cache_hits: int
    timings: dict[str, float] = field(default_factory=dict)
    content_id: str | None = None
    content_cache: str = "off"  # hit | miss | off (not kept: too large, or the cache is off)
    model_version: str | None = None


class Timer:
    """Collects stage durations for the Server-Timing header and reports each stage as it ends
    (``observe``: so /metrics shows the work a cancelled request still did); checks for
    cancellation between stages."""

    def __init__(self, cancel: threading.Event, observe: Callable[[str, float], None]) -> None:
        self.cancel, self.observe = cancel, observe
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.cancel.is_set():
            raise Cancelled()
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        self.observe(name, seconds)


class Engine:
    def __init__(self, settings: Settings, stylizer: Stylizer | None = None) -> None:
        self.settings = settings
        self.stylizer = stylizer
        self.tenants = Tenants.from_settings(settings.api_keys, settings.keys_file, settings.tenant_defaults())
        self.metrics = Metrics(self.gauges, self.tenants.names)
        self.rates = RateLimiter(settings.redis_url, on_error=self.metrics.rate_limit_errors.inc)
        self.registry = StyleRegistry(open_style_store(settings, self.metrics.store_call), settings.style_cache_size)
        self.contents = content_cache(int(settings.content_cache_mb * 2**20))
        self.decoders: Decoders  # once loaded: the decoder versions (service/decoders.py)
        self.queue = ModelQueue(settings.workers, settings.queue_depth, settings.request_timeout,
                                on_model_seconds=self.metrics.model_time)
        self.videos = VideoJobs(settings, open_job_store(settings))
        self.batcher: Batcher | None = None
        self.streams: dict[str, int] = {}  # live streams open, per tenant
        self.anonymous = 0  # sockets open that have not said who they are
        self.buffered = Budget(settings.max_buffered_bytes)  # request bodies in memory (BodyLimitMiddleware)
        self.ready = False
        self.load_seconds = 0.0
        self.seconds_per_mp = 0.0  # measured by the warm-up on this machine (0: not measured)

    # lifetime

    def load(self) -> None:
        """Load weights once (unless injected), warm up, encode presets; then ready."""
        s = self.settings
        start = time.perf_counter()
        if s.torch_threads:
            torch.set_num_threads(s.torch_threads)
        if self.stylizer is None:
            self.stylizer = Stylizer.load(s.decoder, vgg_path=s.vgg, device=s.device, precision=s.precision,
                                          tile=s.tile_size, backend=s.backend, conv=s.convolution,
                                          onnx_dir=s.onnx_dir or s.state_dir / "onnx")
        if s.warmup:  # the common sizes: kernels chosen, convolutions measured, this machine's speed
            self.seconds_per_mp = self.stylizer.warmup(sorted({256, s.default_content_size} - {0}))
        if s.batch_max > 1:
            self.batcher = Batcher(self.stylizer.render_whole, s.batch_max, s.batch_wait_ms / 1000,
                                   on_batch=self.metrics.batch_size.observe)
        n = self.registry.load_presets(
            s.presets_dir, lambda img: self.stylizer.encode_style(img, s.default_style_size), s.default_style_size)
        self.decoders = Decoders(ModelStore.of(s), self.stylizer, s.max_loaded_decoders)
        self.videos.stylizer_for = self.decoders.stylizer
        self.videos.start(self.stylizer)
        self.load_seconds = time.perf_counter() - start
        self.ready = True
        log.info("ready in %.2f s on %s/%s (%s) with %d presets (decoder %s, %s style store, tenants: %d%s); "
                 "%.2f s/MP; 3x3 convolutions: %s", self.load_seconds, self.stylizer.device, self.stylizer.precision,
                 self.stylizer.backend, n, s.decoder, self.registry.store.backend, len(self.tenants.names),
                 "" if self.tenants.required else ": no keys", self.seconds_per_mp,
                 self.stylizer.convolutions or "the backend's own")

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

    def gauges(self) -> dict[str, float]:
        """The live values /metrics reads when scraped."""
        return {
            "queue_depth": self.queue.waiting, "in_flight": self.queue.in_flight,
            "cache_hits": self.registry.cache.hits, "cache_misses": self.registry.cache.misses,
            "cache_entries": len(self.registry.cache), "content_hits": self.contents.hits,
            "content_misses": self.contents.misses, "content_bytes": self.contents.weight,
            "load_seconds": self.load_seconds, "ready": float(self.ready),
            "video_jobs": self.videos.active, "video_jobs_waiting": self.videos.waiting,
            "live_streams": sum(self.streams.values()), "anonymous_streams": self.anonymous,
            "buffered_bytes": self.buffered.used,
        }

    # callers

    def caller(self, key: str | None) -> Caller:
        """The caller a key stands for; 401 for a missing or wrong one."""
        caller = self.tenants.resolve(key)
        if caller is None:
            raise Unauthorized("missing or wrong API key: send it in the X-API-Key header",
                               headers={"WWW-Authenticate": "X-API-Key"})
        return caller

    async def admit(self, caller: Caller, state: MutableMapping) -> None:
        """Count a request (or stream) against ``caller``'s rate: 429 over it. The tenant and the
        rate-limit headers go into the request's state for the metrics and every response."""
        context.tenant.set(caller.tenant)
        state["tenant"] = caller.tenant
        verdict = await asyncio.to_thread(self.rates.hit, caller) if self.rates.remote else self.rates.hit(caller)
        if verdict is None:
            return
        state["rate_headers"] = verdict.headers()
        if not verdict.allowed:
            self.metrics.throttled.labels(caller.tenant, "rate").inc()
            raise TooManyRequests(f"tenant {caller.tenant!r} is over its rate limit ({caller.limits.rate_limit}); "
                                  f"retry in {verdict.reset} s", headers=verdict.headers())

    async def _run(self, caller: Caller, job: Callable[[Turn], T], timeout: float | None = None) -> T:
        try:
            return await self.queue.run(caller, job, timeout)
        except TooManyRequests:
            self.metrics.throttled.labels(caller.tenant, "queue").inc()
            raise

    # requests

    async def stylize(self, caller: Caller, form: StylizeForm) -> StylizeResult:
        options = form.options(self.settings)
        styles = await self._styles(caller, form, options.style_size)
        if form.content is not None:
            check_declared(form.content, self.settings, options.content_size)
        elif content_key(caller, options.content_size, form.content_id) not in self.contents:
            raise ContentGone()
        version = self.decoders.choose(form.decoder)
        start, outcome = time.perf_counter(), "cancelled"
        try:
            result = await self._run(caller, partial(self._stylize, caller, form, options, styles, version),
                                     self._timeout(form, options))
            outcome = "ok"
            return result
        except ServiceError as e:
            outcome = str(e.status)
            raise
        finally:
            self.metrics.version_done(version, outcome, time.perf_counter() - start)

    async def submit_video(self, caller: Caller, form: VideoForm) -> VideoJob:
        try:
            # style sizes are checked once the clip is (VideoJobs._sources): the clip is what the job is
            recolour = form.options(self.settings).preserve_color
            styles = [self.registry.source(s, recolour) if isinstance(s, StyleEntry) else s
                      for s in await self._styles(caller, form, None)]
            version = self.decoders.choose(form.decoder)  # one version for the whole clip
        except BaseException:
            form.video.path.unlink(missing_ok=True)
            raise
        return await self.videos.submit(caller, form, styles, version)

    async def _styles(self, caller: Caller, form: StyleFields, style_size: int | None) -> list[Upload | StyleEntry]:
        """The form's styles in order, ids looked up (400 for none, too many or an unknown id),
        uploads checked from their headers at ``style_size`` (413; None: later)."""
        given = form.styles
        self.check_style_count(len(given))
        for style in given:
            if isinstance(style, Upload) and style_size is not None:
                check_declared(style, self.settings, style_size, style=True)
        if not any(isinstance(s, str) for s in given):
            return given  # type: ignore[return-value]
        # the store may be remote: off the event loop
        return await asyncio.to_thread(lambda: [self.lookup(caller, s) if isinstance(s, str) else s
                                                for s in given])

    def _timeout(self, form: StylizeForm, options: Options) -> float:
        """The queue's deadline, longer for a large output (its size read from the upload's
        header): per megapixel the setting's seconds, or a margin over this machine's measured
        speed when that is slower."""
        s, size = self.settings, form.content and declared_size(form.content)
        if size is None:
            return s.request_timeout
        w, h = scaled_size(size, options.content_size)
        per_mp = max(s.timeout_per_megapixel, s.timeout_margin * self.seconds_per_mp)
        return max(s.request_timeout, w * h / 1e6 * per_mp)

    async def register(self, caller: Caller, form: StyleForm) -> StyleEntry:
        size = form.options(self.settings).style_size
        check_declared(form.style, self.settings, size, style=True)

        def job(turn: Turn) -> StyleEntry:
            image = decode(form.style, self.settings, size, style=True)
            code, _ = self._style_code(caller, form.style, size, image)
            thumbnail = small_jpeg(image, THUMBNAIL_SIDE) if self.settings.keep_style_thumbnails else None
            return self.registry.register(caller, form.style.data, size, code, form.name, form.ttl, thumbnail)

        return await self._run(caller, job)

    async def preview(self, caller: Caller, form: PreviewForm) -> StylizeResult:
        """A small JPEG of an upload as the service reads it (EXIF turned), with the full
        size in ``width``/``height``: a page's picture of a HEIC or TIFF photo."""
        def job(turn: Turn) -> StylizeResult:
            img = decode(form.image, self.settings, None)
            return StylizeResult(small_jpeg(img, PREVIEW_SIDE), "image/jpeg", img.width, img.height, 0)

        return await self._run(caller, job)

    async def style(self, caller: Caller, style_id: str) -> StyleEntry:
        """GET /styles/{id}: the id is the resource, so an unknown one is 404."""
        return await asyncio.to_thread(self.lookup, caller, style_id, NotFound)

    async def styles(self, caller: Caller, limit: int, cursor: str | None,
                     tenant: str | None = None) -> tuple[list[StyleEntry], str | None]:
        if tenant is not None and not caller.is_admin and tenant != caller.tenant:
            raise Forbidden("only an admin lists another tenant's styles")
        return await asyncio.to_thread(self.registry.page, caller, limit, cursor, tenant)

    async def delete(self, caller: Caller, style_id: str) -> None:
        if style_id in self.registry.presets:
            raise Forbidden(f"{style_id!r} is a preset; presets come from the server's presets folder")
        if not await asyncio.to_thread(self.registry.delete, caller, style_id):
            raise NotFound(f"no style with id {style_id!r}")

    def check_style_count(self, n: int) -> None:
        """400 for no style or more than ADAIN_MAX_STYLES (requests, video jobs, live settings)."""
        if not n:
            raise BadRequest("give at least one style: a 'style' file or a 'style_id'")
        if n > self.settings.max_styles:
            raise BadRequest(f"{n} styles given; at most {self.settings.max_styles} per request")

    def lookup(self, caller: Caller, style_id: str, missing: type[ServiceError] = BadRequest) -> StyleEntry:
        """A preset or a style ``caller`` registered. An unknown id (or another tenant's) raises
        ``missing``: 400 where the id is a field of a request, 404 where it is the resource."""
        entry = self.registry.get(caller, style_id.strip())
        if entry is None:
            raise missing(f"style_id {style_id!r} is not registered (GET /styles lists them)")
        return entry

    # live streams (service/live.py speaks the protocol)

    @contextmanager
    def anonymous_stream(self) -> Iterator[None]:
        """Hold one of the replica's places for a socket that has not said who it is yet; Busy
        when they are all taken."""
        if self.anonymous >= self.settings.max_anonymous_streams:
            raise Busy(f"{self.anonymous} connections have not yet sent their API key, the most this server "
                       "holds; try again shortly")
        self.anonymous += 1
        try:
            yield
        finally:
            self.anonymous -= 1

    @contextmanager
    def open_stream(self, caller: Caller) -> Iterator[None]:
        """Hold one of the replica's and the tenant's stream places while the stream is open;
        Busy / TooManyRequests when there is none."""
        self.check_stream_room()
        mine = self.streams.get(caller.tenant, 0)
        if mine >= caller.limits.max_streams:
            raise TooManyRequests(f"tenant {caller.tenant!r} already has {mine} live streams open on this server, "
                                  "its limit; close one first")
        self.streams[caller.tenant] = mine + 1
        try:
            yield
        finally:
            self.streams[caller.tenant] -= 1

    def check_stream_room(self) -> None:
        """Busy unless the model is ready and the replica has a stream place free (checked when a
        stream connects, before it has said who it is, and again when it takes its place)."""
        if not self.ready:
            raise Busy("the model is still loading; try again shortly")
        total = sum(self.streams.values())
        if total >= self.settings.max_streams:
            raise Busy(f"{total} live streams are open, the most this server takes; try again shortly")

    def stream_frames(self, caller: Caller, settings: LiveSettings) -> Frames:
        """A stream's settings made ready to render frames (styles looked up as ``caller``)."""
        self.check_style_count(len(settings.style_id))
        if settings.content_size ** 2 > self.settings.max_stream_pixels:
            raise BadRequest(f"content_size {settings.content_size} is too large for a stream: frames up to "
                             f"{self.settings.max_stream_pixels} pixels")
        options = Options(alpha=settings.alpha, color_match=settings.color_match, content_size=0,
                          matching=settings.matching)
        codes = [self.lookup(caller, i).code for i in settings.style_id]
        check_combination(codes, options, masked=False)
        code = mix(codes, normalise_weights(settings.weights, len(codes)))
        st = self.decoders.stylizer(self.decoders.choose(settings.decoder))
        return Frames(st, [code], options, Stabilizer() if settings.stabilize else None)

    async def render_frame(self, caller: Caller, frames: Frames, size: int, data: bytes) -> bytes:
        """One stream frame through the model queue, in ``caller``'s turn: a JPEG."""
        def job(turn: Turn) -> bytes:
            img = open_image(data, max_pixels=self.settings.max_stream_pixels)
            check_size(f"this {img.width}x{img.height} frame", img.size, size, self.settings.max_stream_pixels,
                       "ADAIN_MAX_STREAM_PIXELS")
            out = frames(np.asarray(resize_shorter(img, size)))
            return encode_image(Image.fromarray(out), "jpeg", jpeg_quality=STREAM_JPEG_QUALITY)

        return await self._run(caller, job, timeout=STREAM_FRAME_TIMEOUT)

    # on a worker thread

    def _style_code(self, caller: Caller, upload: Upload, style_size: int,
                    image: Image.Image | None = None) -> tuple[StyleCode, bool]:
        """A style upload's code: (code, cache hit). Encoded (decoded within the limits, unless
        ``image`` is the decoded upload) on a miss and kept in the registry's cache, keyed by the
        tenant, the bytes and the size."""
        code = self.registry.cached(caller, upload.data, style_size)
        if code is not None:
            return code, True
        if image is None:
            image = decode(upload, self.settings, style_size, style=True)
        code = self.stylizer.encode_style(image, style_size)
        self.registry.keep(caller, upload.data, style_size, code)
        return code, False

    def _content(self, caller: Caller, form: StylizeForm, options: Options, t: Timer,
                 turn: Turn) -> tuple[Image.Image | ContentFeatures, str, str]:
        """The content as the plan takes it: its kept features (a hit: no decode, no encoder), or
        decoded, resized and encoded, its features kept when they fit (a miss), or the image when
        they cannot be kept. With its content id and hit / miss / off."""
        cid = form.content_id or content_id(form.content.data)
        key = content_key(caller, options.content_size, cid)
        features = self.contents.get(key)
        if features is not None:
            t.timings["encode-content"] = 0.0  # skipped: Server-Timing says so
            return features, cid, "hit"
        if form.content is None:
            raise ContentGone()  # dropped since the request was let in
        with t.stage("decode"):
            image = resize_shorter(decode(form.content, self.settings, options.content_size), options.content_size)
        if not self.contents.fits(self.stylizer.feature_bytes(image.size)):
            return image, cid, "off"
        with t.stage("encode-content"):
            features = self.stylizer.encode_content(image, progress=lambda done, total: turn.checkpoint())
        self.contents.put(key, features)
        return features, cid, "miss"

    def _stylize(self, caller: Caller, form: StylizeForm, options: Options, styles: list[Upload | StyleEntry],
                 version: str, turn: Turn) -> StylizeResult:
        s, t, hits = self.settings, Timer(turn.cancel, self.metrics.stage), 0
        st = self.decoders.stylizer(version)  # shares the encoder: content features serve every version
        content, cid, kept = self._content(caller, form, options, t, turn)
        with t.stage("decode"):
            mask = decode(form.mask, s, None) if form.mask is not None else None
        sources: list[Image.Image | StyleCode] = []
        for style in styles:
            with t.stage("encode-style"):
                if isinstance(style, StyleEntry):
                    sources.append(self.registry.source(style, options.preserve_color))
                elif options.preserve_color:  # recoloured to this content: nothing to cache
                    sources.append(decode(style, s, options.style_size, style=True))
                else:  # an inline upload: through the cache (tenant + bytes + style size)
                    code, hit = self._style_code(caller, style, options.style_size)
                    sources.append(code)
                    hits += hit
        with t.stage("stylize"):
            plan = st.prepare(content, sources, options, mask)
            # a tiled image renders alone, a tile per turn: another tenant may go between two tiles,
            # and a request nobody waits for stops at the next one
            tiled = st.tiled(plan.size)
            if tiled:
                out = st.render_tiled(plan, progress=lambda done, total: turn.checkpoint())
            elif self.batcher and st is self.stylizer:
                out = self.batcher.submit(plan)
            else:
                out = st.render_whole([plan])[0]
        with t.stage("encode-image"):
            if form.format == "png" and tiled:
                data: bytes | Iterator[bytes] = png_chunks(out, s.png_compress_level)  # encoded while sent
            else:
                data = encode_image(out, form.format, png_level=s.png_compress_level,
                                    jpeg_quality=s.jpeg_quality, webp_quality=s.webp_quality)
        return StylizeResult(data, OUTPUT_FORMATS[form.format][1], out.width, out.height, hits, t.timings, cid, kept,
                             version)
