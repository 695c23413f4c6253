"""Shared by the benchmark scripts: synthetic test images (no data files needed), PSNR."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def image(size: int, seed: int) -> Image.Image:
    """A smooth random colour image of size x size (photo-like enough for timing)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, size // 16), max(1, size // 16), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio of two same-size 8-bit images, in dB."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(10 * np.log10(255**2 / max((d**2).mean(), 1e-12)))


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()
