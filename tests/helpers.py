"""Test helpers: generated images and multipart bodies (no data files needed)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

import model.images  # noqa: F401 - registers the HEIF plugin that phone_photo saves with


def psnr(a, b) -> float:
    """PSNR in dB of two same-size 8-bit pictures (PIL images or uint8 arrays); inf when equal."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert x.shape == y.shape, (x.shape, y.shape)
    err = np.mean((x - y) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(255.0 ** 2 / err))


def noise_image(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Smooth-ish coloured noise: random blocks upsampled, so features are not degenerate."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    return Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BILINEAR).convert(mode)


@torch.no_grad()
def without_direction(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with each 3x3 kernel averaged with its 7 mirror images and turns: with reflection
    padding, nearest upsampling and even-sized max pooling, the network then has no up, left or
    vertical of its own (mirror the input and the output mirrors)."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3):
            w = m.weight
            turns = [w, w.flip(2), w.flip(3), w.flip(2, 3)]
            w.copy_(sum(turns + [t.transpose(2, 3) for t in turns]) / 8)
    return net


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


CONTENT = png(noise_image(96, 64, seed=1))
STYLE_A = png(noise_image(64, 64, seed=2))
# a style unlike A: green, high-contrast stripes, so weights and masks visibly matter
_stripes = np.zeros((64, 64, 3), np.uint8)
_stripes[::8] = _stripes[1::8] = _stripes[2::8] = (20, 220, 60)
STYLE_B = png(Image.fromarray(_stripes, "RGB"))


def files(content: bytes = CONTENT, *styles: bytes, mask: bytes | None = None) -> list:
    parts = [("content", ("content.png", content, "image/png"))]
    parts += [("style", (f"style{i}.png", s, "image/png")) for i, s in enumerate(styles)]
    if mask is not None:
        parts.append(("mask", ("mask.png", mask, "image/png")))
    return parts


def phone_photo(w: int = 40, h: int = 20, orientation: int = 6) -> bytes:
    """A HEIC as a phone saves it: landscape pixels, to be shown turned (EXIF orientation)."""
    img = Image.new("RGB", (w, h), (200, 10, 10))
    img.paste((10, 200, 10), (0, 0, w // 4, h))  # green on the left edge
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "HEIF", exif=exif.tobytes(), quality=95)
    return buf.getvalue()
