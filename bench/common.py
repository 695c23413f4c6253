"""Shared by the benchmark scripts: synthetic test images (no data files needed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def image(size: int, seed: int) -> Image.Image:
    """A smooth random colour image of size x size (photo-like enough for timing)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, size // 16), max(1, size // 16), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
