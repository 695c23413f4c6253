"""The work of one /stylize or /styles request, run on a model worker thread (never on the event
loop): decode uploads, encode styles (through the cache), stylize, encode the output image.
Every pixel goes through model.images and model.Stylizer; this module only sequences and times."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from PIL import Image

from model.adain import StyleCode, mix
from model.images import (OUTPUT_FORMATS, ImageTooLarge, InvalidImage, encode_image, open_image, resize_shorter,
                          scaled_size)
from model.stylizer import Stylizer
from service.batching import Batcher
from service.errors import Cancelled, TooLarge
from service.registry import StyleEntry, StyleRegistry
from service.settings import Settings


@dataclass
class Upload:
    label: str  # how the user knows this file: "content", "style #2 (a.jpg)", "mask"
    data: bytes


@dataclass
class StylizeJob:
    content: Upload
    styles: list[Upload | StyleEntry]
    weights: list[float] | None
    alpha: float
    preserve_color: bool
    color_match: float
    mask: Upload | None
    content_size: int
    style_size: int
    fmt: str


@dataclass
class StylizeResult:
    data: bytes
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


def decode(upload: Upload, settings: Settings, shorter_side: int | None) -> Image.Image:
    """Decode an upload within the pixel limits, naming the upload in any error. ``shorter_side``
    is the size the network will see it at (checked against the output limit); None for a mask,
    which is only resized to the content."""
    try:
        img = open_image(upload.data, max_pixels=settings.max_image_pixels)
    except InvalidImage as e:
        raise InvalidImage(f"{upload.label}: {e}") from None
    except ImageTooLarge as e:
        raise ImageTooLarge(f"{upload.label}: {e} (ADAIN_MAX_IMAGE_PIXELS)") from None
    if shorter_side is None:
        return img
    w, h = scaled_size(img.size, shorter_side)
    if w * h > settings.max_output_pixels:
        raise TooLarge(f"{upload.label}: at shorter side {shorter_side or min(img.size)} it would be {w}x{h} = "
                       f"{w * h} pixels; the limit is {settings.max_output_pixels}: ask for a smaller size")
    return img


def style_code(stylizer: Stylizer, registry: StyleRegistry, settings: Settings, upload: Upload,
               style_size: int, name: str | None = None, register: bool = False) -> tuple[StyleEntry, bool]:
    """A style upload's code through the shared cache (bytes + style size)."""
    def encode() -> StyleCode:
        return stylizer.encode_style(decode(upload, settings, style_size), style_size)

    return registry.get_or_encode(upload.data, style_size, encode, name=name, register=register)


def run_stylize(stylizer: Stylizer, registry: StyleRegistry, settings: Settings, job: StylizeJob,
                cancel: threading.Event, batcher: Batcher | None = None) -> StylizeResult:
    t = Timer(cancel)
    with t.stage("decode"):
        content = decode(job.content, settings, job.content_size)
        mask = decode(job.mask, settings, None) if job.mask is not None else None
    styles: list[Image.Image | StyleCode] = []
    hits = 0
    for s in job.styles:
        with t.stage("encode-style"):
            if isinstance(s, StyleEntry):
                styles.append(s.code)
            elif job.preserve_color:  # recoloured per content: nothing to cache
                styles.append(decode(s, settings, job.style_size))
            else:
                entry, hit = style_code(stylizer, registry, settings, s, job.style_size)
                styles.append(entry.code)
                hits += hit
    with t.stage("stylize"):
        if batcher is not None and mask is None and all(isinstance(s, StyleCode) for s in styles):
            codes = [s for s in styles if isinstance(s, StyleCode)]
            out = batcher.submit(resize_shorter(content, job.content_size), mix(codes, job.weights), job.alpha,
                                 job.color_match)
        else:
            out = stylizer.stylize(content, styles, weights=job.weights, alpha=job.alpha, mask=mask,
                                   preserve_color=job.preserve_color, content_size=job.content_size,
                                   style_size=job.style_size, color_match=job.color_match)
    with t.stage("encode-image"):
        data = encode_image(out, job.fmt, png_level=settings.png_compress_level,
                            jpeg_quality=settings.jpeg_quality, webp_quality=settings.webp_quality)
    return StylizeResult(data, OUTPUT_FORMATS[job.fmt][1], out.width, out.height, hits, t.timings)
