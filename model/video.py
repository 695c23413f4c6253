"""Video in and out with PyAV (FFmpeg inside its wheel, libx264 included: no system ffmpeg).

``probe`` reads what a file holds and refuses what cannot or may not be rendered before any work;
``decoded`` reads frames (MP4/H.264, WebM/VP8/VP9, MOV, MKV, GIF ...) upright at the output size;
``Frames`` renders them through the Stylizer with the clip's style codes and the ``Stabilizer``
between frames; ``Writer`` encodes H.264 in yuv420p. ``model/segments.py`` puts these together,
for a whole clip or a part of one. Memory is a few frames whatever the clip's length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from model.errors import InvalidVideo, VideoTooLarge
from model.images import scaled_size, to_image, to_tensor
from model.plan import Options, Plan
from model.stylizer import Stylizer
from model.temporal import Stabilizer

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".gif", ".avi")
CRF = 18  # x264 quality: visually lossless for stylized frames, ~1-3 Mbit/s at 480p


@dataclass(frozen=True)
class VideoInfo:
    """What a clip holds: display size (rotation applied), frame rate, frame count (the header's,
    or duration x fps when it has none), duration in s, rotation in degrees, codecs."""

    width: int
    height: int
    fps: Fraction
    frames: int
    seconds: float
    rotation: int
    codec: str
    audio: str | None
    first: np.ndarray | None = field(default=None, repr=False, compare=False)  # upright RGB, input size


@dataclass(frozen=True)
class VideoLimits:
    """``seconds``: longest clip; ``pixels``: largest output frame; ``input_pixels``: largest
    frame decoded; ``frames``: most frames (a short clip at a high rate is as much work as a long
    one); ``fps``: highest frame rate. None = no limit."""

    seconds: float | None = None
    pixels: int | None = None
    input_pixels: int | None = None
    frames: int | None = None
    fps: float | None = None


def open_video(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as e:
        raise InvalidVideo(f"not a video that can be read ({_reason(e)})") from None


def _reason(e: Exception) -> str:
    return (getattr(e, "strerror", None) or str(e) or type(e).__name__).strip()


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame as (H, W, 3) uint8 RGB, turned the way a player shows it (the display matrix's
    rotation, counter-clockwise degrees)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def probe(path: Path, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Read the header and decode the first frame: ``InvalidVideo`` for what is not a playable
    video (not one, truncated, no frames, a codec FFmpeg lacks), ``VideoTooLarge`` past ``limits``
    (a header claiming 10 hours is refused here, before any frame is rendered)."""
    with open_video(path) as c:
        if c.format.name == "image2" or c.format.name.endswith("_pipe"):  # FFmpeg reads a still as 1 frame
            raise InvalidVideo(f"this is a still image ({c.format.name.removesuffix('_pipe')}), not a video")
        if not c.streams.video:
            raise InvalidVideo("the file has no video stream")
        v = c.streams.video[0]
        if v.codec_context is None or not v.codec_context.codec.name:
            raise InvalidVideo("the video's codec is not one this server can decode")
        w, h = v.codec_context.width, v.codec_context.height
        if limits.input_pixels and w * h > limits.input_pixels:
            raise VideoTooLarge(f"frames are {w}x{h}; the limit is {limits.input_pixels} pixels per frame")
        fps = v.average_rate or v.guessed_rate or v.base_rate
        if not fps or fps <= 0 or fps > 1000:
            raise InvalidVideo(f"the video declares no usable frame rate ({fps})")
        if limits.fps and fps > limits.fps:
            raise VideoTooLarge(f"the video is {float(fps):g} frames/s; the limit is {limits.fps:g}")
        seconds = (float(v.duration * v.time_base) if v.duration and v.time_base else
                   c.duration / av.time_base if c.duration else (v.frames / fps if v.frames else 0.0))
        if limits.seconds and seconds > limits.seconds:
            raise VideoTooLarge(f"the video is {seconds:.1f} s long; the limit is {limits.seconds:g} s")
        try:
            first = next(c.decode(v), None)
        except av.FFmpegError as e:
            raise InvalidVideo(f"the first frame cannot be decoded ({_reason(e)})") from None
        if first is None:
            raise InvalidVideo("the video has no frames")
        rotation, rgb = int(first.rotation or 0), _upright(first)
        if round(rotation / 90) % 2:
            w, h = h, w
        frames = v.frames or max(1, round(seconds * fps))
        if limits.frames and max(frames, seconds * fps) > limits.frames:
            raise VideoTooLarge(f"the video has {max(frames, round(seconds * fps))} frames; the limit is {limits.frames}")
        audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
        return VideoInfo(w, h, Fraction(fps), frames, seconds, rotation, v.codec_context.codec.name, audio, rgb)


def output_size(info: VideoInfo, content_size: int, max_pixels: int | None = None) -> tuple[int, int]:
    """The output frame's (w, h): ``content_size`` as the shorter side (0 = the input's), rounded
    down to even sides (yuv420p halves the colour planes)."""
    w, h = scaled_size((info.width, info.height), content_size)
    w, h = max(2, w - w % 2), max(2, h - h % 2)
    if max_pixels and w * h > max_pixels:
        raise VideoTooLarge(f"frames would be {w}x{h} = {w * h} pixels; the limit is {max_pixels}: "
                            "ask for a smaller content_size")
    return w, h


class Writer:
    """Frames out as MP4: H.264 yuv420p from a keyframe, the same settings for every file, so
    files written apart (a clip's segments) join without re-encoding (``model/segments.py``)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction) -> None:
        self.out = av.open(str(path), "w", format="mp4")
        self.video = self.out.add_stream("libx264", rate=fps)
        self.video.width, self.video.height = size
        self.video.pix_fmt = "yuv420p"
        self.video.options = {"crf": str(CRF), "preset": "veryfast"}
        self.frames = 0

    def frame(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.frames
        self.out.mux(self.video.encode(frame))
        self.frames += 1

    def close(self) -> None:
        self.out.mux(self.video.encode())
        self.out.close()


class Frames:
    """One clip's frames through the Stylizer: the style ``codes`` (made from the first frame when
    not given: ``preserve_color`` recolours them to it), the ``stabilizer`` between frames (None:
    each frame on its own), then the colour step on each frame as shown. The colour step comes last
    because the stabilizer renders past the frame's edges: colours matched over that larger canvas
    measured 9 % further from the style (the card's style term, 320x240 frames)."""

    def __init__(self, stylizer: Stylizer, styles: Sequence[object], options: Options,
                 stabilizer: Stabilizer | None, codes: tuple | None = None) -> None:
        self.stylizer, self.styles, self.options, self.stabilizer = stylizer, styles, options, stabilizer
        self.codes = codes

    def _network(self, rgb: np.ndarray) -> np.ndarray:
        plan = Plan(Image.fromarray(rgb), self.codes, self.options.alpha, 0.0, matching=self.options.matching)
        return np.asarray(self.stylizer.render([plan])[0])

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """The stylized frame for (H, W, 3) uint8 RGB ``rgb``, at its output size already."""
        if self.codes is None:
            self.codes = clip_codes(self.stylizer, rgb, rgb.shape[1::-1], self.styles, self.options)
        out = self.stabilizer(rgb, self._network) if self.stabilizer else self._network(rgb)
        plan = Plan(Image.fromarray(out), self.codes, self.options.alpha, self.options.color_match)
        return np.asarray(to_image(Stylizer.recolor(to_tensor(plan.content)[0], plan)))


def at_size(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) uint8 frame at the output ``size`` (w, h): bicubic, as every frame is."""
    return rgb if rgb.shape[1::-1] == size else np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))


def clip_codes(stylizer: Stylizer, first: np.ndarray, size: tuple[int, int], styles: Sequence[object],
               options: Options) -> tuple:
    """The style codes for a whole clip, made once from its first frame at the output ``size``
    (``preserve_color`` recolours the styles to it)."""
    return stylizer.prepare(Image.fromarray(at_size(first, size)), styles, replace(options, content_size=0)).codes


def decoded(path: Path, size: tuple[int, int], start: int = 0, stop: int | None = None,
            limits: VideoLimits = VideoLimits()) -> Iterator[tuple[int, np.ndarray]]:
    """(index, upright RGB frame at ``size``) for frames ``start`` to ``stop`` (exclusive; None =
    to the end). Frames before ``start`` are decoded but not converted: the index is the frame's
    place in decoding order, which is right for variable frame rates too, where a seek by time is
    not. ``InvalidVideo`` for a damaged packet, ``VideoTooLarge`` past ``limits.seconds`` or
    ``limits.frames``."""
    with open_video(path) as c:
        v = c.streams.video[0]
        v.thread_type = "AUTO"
        rate = v.average_rate or v.guessed_rate
        index = 0
        for packet in c.demux(v):
            for frame in _decode(packet, index):
                if stop is not None and index >= stop:
                    return
                if limits.seconds and rate and index / rate > limits.seconds + 1:
                    raise VideoTooLarge(f"the video runs past {limits.seconds:g} s (longer than its header said)")
                if limits.frames and index >= limits.frames:
                    raise VideoTooLarge(f"the video has more than {limits.frames} frames (more than its header said)")
                if index >= start:
                    yield index, at_size(_upright(frame), size)
                index += 1


def _decode(packet: av.Packet, done: int) -> Iterator[av.VideoFrame]:
    try:
        yield from packet.decode()
    except av.FFmpegError as e:  # a damaged packet mid-stream
        raise InvalidVideo(f"the video is damaged after frame {done} ({_reason(e)})") from None


def read_video(path: Path) -> tuple[list[np.ndarray], Fraction]:
    """Every frame (upright RGB) and the frame rate: for tests and benchmarks of short clips."""
    with open_video(path) as c:
        v = c.streams.video[0]
        return [_upright(f) for f in c.decode(v)], Fraction(v.average_rate or v.guessed_rate)

