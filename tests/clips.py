"""Generated test clips (no data files): a pan over a photo, a moving shape, a scene cut; written
with PyAV directly (not through model/video.py, which the tests check), with or without a tone
as an audio track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from skimage import data

PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea, "rocket": data.rocket}


def photo(name: str, width: int) -> np.ndarray:
    """A scikit-image sample photo (bundled in its wheel) scaled to ``width``."""
    img = Image.fromarray(PHOTOS[name]()).convert("RGB")
    return np.asarray(img.resize((width, round(img.height * width / img.width)), Image.Resampling.BICUBIC))


def pan(w: int, h: int, n: int, name: str = "astronaut", step: float = 2.0) -> list[np.ndarray]:
    """A camera panning right and down over a photo at ``step`` px per frame (sub-pixel steps
    resampled, as a real camera's are)."""
    src = Image.fromarray(photo(name, round(w * 1.6)))
    frames = []
    for i in range(n):
        x, y = i * step, i * step * 0.4
        frames.append(np.asarray(src.transform((w, h), Image.Transform.AFFINE, (1, 0, x, 0, 1, y),
                                               Image.Resampling.BILINEAR)))
    return frames


def moving_shape(w: int, h: int, n: int, name: str = "coffee") -> list[np.ndarray]:
    """A still background with an orange disc crossing it (an object that occludes and reveals)."""
    bg = np.asarray(Image.fromarray(photo(name, w)).crop((0, 0, w, h)))
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        cx, cy, r = w * (0.15 + 0.7 * i / max(1, n - 1)), h * 0.5, h * 0.22
        f = bg.copy()
        f[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (235, 120, 30)
        frames.append(f)
    return frames


def cut(w: int, h: int, n: int) -> list[np.ndarray]:
    """A pan over one photo, then a cut to a pan over another at frame n // 2."""
    return pan(w, h, n // 2, "astronaut") + pan(w, h, n - n // 2, "chelsea")


def write(path: Path, frames: list[np.ndarray], fps: int = 24, codec: str = "libx264", audio: bool = False,
          pix_fmt: str = "yuv420p") -> Path:
    """Frames to a file (the container from the suffix); ``audio`` adds a 440 Hz AAC (Opus in
    WebM) tone as long as the video."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        a = None
        if audio:
            a = out.add_stream("libopus" if path.suffix == ".webm" else "aac", rate=48000)
            a.layout = "mono"
        for f in frames:
            for packet in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            samples = round(len(frames) / fps * 48000)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
            for i in range(0, samples, 960):
                chunk = tone[None, i:i + 960]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 48000, i, Fraction(1, 48000)
                for packet in a.encode(frame):
                    out.mux(packet)
            for packet in a.encode():
                out.mux(packet)
    return path


def set_rotation(path: Path, clockwise: int) -> Path:
    """Mark an MP4 to be shown turned ``clockwise`` degrees (90 or 270), as a phone filming upright
    does: the video track header's display matrix is rewritten in place (the frames are unchanged)."""
    blob = bytearray(path.read_bytes())
    tkhd = blob.index(b"tkhd")  # the first track: the video (these clips have no other before it)
    version = blob[tkhd + 4]
    matrix = tkhd + 4 + 4 + (8 + 8 + 4 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4 + 4) + 8 + 2 + 2 + 2 + 2
    one, rows = 1 << 16, {90: (0, 1, -1, 0), 270: (0, -1, 1, 0)}[clockwise]
    a, b, c, d = (v * one for v in rows)
    values = (a, b, 0, c, d, 0, 0, 0, 1 << 30)
    blob[matrix:matrix + 36] = b"".join(v.to_bytes(4, "big", signed=True) for v in values)
    path.write_bytes(bytes(blob))
    return path


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 15) -> Path:
    """Frames as a raw YUV4MPEG2 file (4:2:0): what Chromium's fake camera plays
    (``--use-file-for-fake-video-capture``)."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            y, u, v = Image.fromarray(frame).convert("YCbCr").split()
            f.write(b"FRAME\n" + y.tobytes() + u.resize((w // 2, h // 2)).tobytes() + v.resize((w // 2, h // 2)).tobytes())
    return path
