"""Image I/O, once for the whole project: decode anything Pillow reads into plain 8-bit RGB,
resize, and convert to and from tensors.

Normalisation rules (what a user gets, documented in docs/pipeline.md):
- EXIF orientation is applied, then the tag is gone (pixels are upright).
- Grayscale, palette, CMYK, YCbCr, LAB, HSV, 1-bit become RGB; 16-bit and 32-bit grayscale are
  scaled to 8 bits (not clipped); 16-bit RGB is read at 8 bits by Pillow.
- Transparency (RGBA, LA, PA, palette with a transparent index) is composited over white, as a
  browser shows it on a white page; the output has no alpha channel.
- Animated GIF/WebP/APNG and multi-page TIFF: the first frame/page is used.
- HEIC/HEIF (phone photos) through pillow-heif, AVIF through Pillow itself: the same rules.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from model.errors import ImageTooLarge, InvalidImage

# Pillow's own bomb check is a warning below 2x its limit; we do our own explicit check instead.
Image.MAX_IMAGE_PIXELS = None
# HEIC/HEIF, what iPhones save by default (libheif in pillow-heif's wheel): libheif applies the
# file's own rotation and pillow-heif then clears the EXIF orientation, so open_image's one
# orientation step never turns a phone photo twice
register_heif_opener(thumbnails=False)

ImageSource = str | Path | bytes | BinaryIO | Image.Image
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"}
INPUT_FORMATS = ("PNG", "JPEG", "WebP", "GIF", "BMP", "TIFF", "HEIC", "HEIF", "AVIF")
INPUT_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/x-ms-bmp", "image/tiff",
                     "image/heic", "image/heif", "image/avif")


def open_image(source: ImageSource, max_pixels: int | None = None) -> Image.Image:
    """Decode ``source`` to an 8-bit RGB image (see module docstring for the rules).

    ``max_pixels`` is checked against the header's declared size before any pixel is decoded,
    so a decompression bomb costs nothing.
    """
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, bytes):
            if not source:
                raise InvalidImage("the file is empty")
            source = io.BytesIO(source)
        try:
            img = Image.open(source)
        except UnidentifiedImageError as e:
            raise InvalidImage("not a readable image (format not recognised)") from e
        except (OSError, SyntaxError, ValueError) as e:  # a known format whose header is damaged
            raise InvalidImage(f"not a readable image: corrupt or truncated header ({e})") from e
    w, h = img.size
    if w < 1 or h < 1:
        raise InvalidImage(f"image has no pixels ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLarge(f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}")
    try:
        # the first frame/page is where Image.open leaves a file: never ask for n_frames, which
        # walks every page of a TIFF (each lookup from the first: a 1 MB file of empty pages
        # costs minutes) or every frame of a GIF
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "palette images with transparency ..."
            img.load()
            if img.getexif().get(0x0112, 1) != 1:  # an orientation to apply (else no copy: 8K is 200 MB)
                img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise InvalidImage(f"image data is corrupt or truncated ({e})") from e


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: wide grayscale rescaled, transparency composited over white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(img, dtype=np.float64)
        # Integer modes come from 16-bit files; float images are taken as [0, 1] unless larger.
        top = (1.0 if a.max() <= 1.0 else 255.0) if img.mode == "F" else 65535.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info or img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def scaled_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """The (w, h) that ``resize_shorter`` gives, without resizing (for limits checks)."""
    w, h = size
    if shorter <= 0 or min(w, h) == shorter:
        return w, h
    scale = shorter / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` px (0 keeps the image as is), keeping aspect ratio."""
    new = scaled_size(img.size, size)
    return img if new == img.size else img.resize(new, Image.Resampling.BICUBIC)


MIN_SIDE = 16  # relu4_1 is 1/8 of the input and its reflection padding needs >= 2 positions


def pad_to_multiple(x: torch.Tensor, multiple: int = 8, minimum: int = MIN_SIDE) -> torch.Tensor:
    """Pad (N, C, H, W) on the right/bottom to a multiple of ``multiple`` (at least ``minimum``),
    by reflection where the image is large enough, else by repeating the edge."""
    h, w = x.shape[-2:]
    ph = max(minimum, -(-h // multiple) * multiple) - h
    pw = max(minimum, -(-w // multiple) * multiple) - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB image -> float32 tensor (1, 3, H, W) in [0, 1]."""
    a = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    return a.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_image(t: torch.Tensor) -> Image.Image:
    """Tensor (1, 3, H, W) or (3, H, W) in [0, 1] (any dtype/device) -> RGB image, clamped."""
    if t.dim() == 4:
        t = t[0]
    a = t.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu()
    return Image.fromarray(a.contiguous().numpy(), "RGB")


OUTPUT_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}


def encode_png(img: Image.Image, level: int = 1) -> bytes:
    """RGB image -> PNG bytes (``png_chunks`` joined)."""
    return b"".join(png_chunks(img, level))


def png_chunks(img: Image.Image, level: int = 1, rows: int = 256) -> Iterator[bytes]:
    """RGB image -> PNG, a piece at a time: every row with the "Up" filter, one zlib stream fed
    ``rows`` rows at a time, so a large image is never held twice (8192²: one strip of 6 MB beside
    it). For network output (smooth, photo-like) the Up filter is ~2x faster than Pillow's per-row
    adaptive filter at the same zlib level, and no larger (512²: 8 ms / 292 KB vs 16 ms / 301 KB);
    zlib releases the GIL meanwhile."""
    img = to_rgb(img)
    w, h = img.size

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    yield b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))  # 8-bit RGB
    z = zlib.compressobj(level)
    above = np.zeros((1, 3 * w), np.uint8)  # the row above the strip (none above the first)
    for y in range(0, h, rows):
        block = np.asarray(img.crop((0, y, w, min(h, y + rows))), dtype=np.uint8).reshape(-1, 3 * w)
        raw = np.empty((len(block), 1 + 3 * w), np.uint8)
        raw[:, 0] = 2  # filter type Up: each byte minus the one above it (mod 256)
        np.subtract(block, np.concatenate([above, block[:-1]]), out=raw[:, 1:])
        above = block[-1:]
        data = z.compress(raw.data)
        if data:
            yield chunk(b"IDAT", data)
    yield chunk(b"IDAT", z.flush()) + chunk(b"IEND", b"")


def small_jpeg(img: Image.Image, side: int, quality: int = 85) -> bytes:
    """A thumbnail: ``img`` fitted within side × side, as JPEG bytes."""
    thumb = img.copy()
    thumb.thumbnail((side, side))
    return encode_image(thumb, "jpeg", jpeg_quality=quality)


def encode_image(img: Image.Image, fmt: str = "png", png_level: int = 1, jpeg_quality: int = 92,
                 webp_quality: int = 90) -> bytes:
    """Encode to png / jpeg / webp bytes. PNG level 1 is ~5x faster than level 6 for files
    ~10% larger: the right trade for a service that answers in real time."""
    if fmt == "png":
        return encode_png(img, png_level)
    pil_format, _ = OUTPUT_FORMATS[fmt]
    opts = {"jpeg": {"quality": jpeg_quality, "optimize": False}, "webp": {"quality": webp_quality, "method": 2}}[fmt]
    buf = io.BytesIO()
    img.save(buf, pil_format, **opts)
    return buf.getvalue()
