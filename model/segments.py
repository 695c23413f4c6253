"""A clip in segments: runs of frames rendered apart (by any replica, in any order) and joined
into one MP4 without re-encoding, with no seam where two meet.

A seam has two causes, and each has its answer:

- **The grid phase.** The stabilizer renders each frame shifted by the camera's path since the
  scene began (``Stabilizer.follow``), so strokes keep one phase against the encoder's 8-px grid.
  A segment that started that path at zero would meet the grid at another phase than the segment
  before it: a re-rolled texture at the seam. ``track`` follows the whole clip once (optical flow
  at 320 px, no network: a few ms a frame) and gives each segment the path where it begins, so
  every segment renders on the phase a single pass would.
- **The blend.** The stabilizer carries the previous output forward; a segment has none. It starts
  ``warmup`` frames early and renders them without writing them, so its blend has settled by its
  first written frame (``WARMUP`` chosen by measurement: docs/video.md).

``stylize_video`` is the single pass: the whole clip as one segment. ``join`` puts segments
together: their H.264 packets one after another, timestamps moved on by the frames before them,
and the original's audio (copied, or AAC when MP4 cannot carry its codec); each segment starts on
a keyframe with the same encoder settings (``model/video.Writer``), so nothing is re-encoded.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from model.errors import InvalidVideo
from model.plan import Options
from model.stylizer import Stylizer
from model.temporal import Stabilizer, gray
from model.video import Frames, VideoInfo, VideoLimits, Writer, decoded, open_video, output_size, probe

WARMUP = 8  # frames rendered before a segment's first written frame (docs/video.md: seam vs K)
# audio codecs an MP4 file carries as they are; anything else is re-encoded to AAC
MP4_AUDIO = {"aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"}


@dataclass(frozen=True)
class Segment:
    """Output frames ``first`` to ``stop`` (exclusive; None = to the clip's end), rendered from
    frame ``warm`` (``first`` - the warm-up, not before 0)."""

    first: int
    stop: int | None
    warm: int


def split(frames: int, length: int, warmup: int = WARMUP) -> list[Segment]:
    """A clip of ``frames`` frames (its header's count: the last segment runs to the real end) in
    segments of ``length``."""
    starts = list(range(0, max(frames, 1), length))
    return [Segment(s, None if i == len(starts) - 1 else s + length, max(0, s - warmup))
            for i, s in enumerate(starts)]


Motion = tuple[float, float] | None  # the camera's path after the frame before a segment's warm-up


def track(src: Path, size: tuple[int, int], segments: Sequence[Segment], limits: VideoLimits = VideoLimits(),
          stop: Callable[[int], None] | None = None) -> list[Motion]:
    """For each segment, the stabilizer's path after the frame before its warm-up (None for a
    segment that warms up from frame 0). ``stop(frames)`` is called now and then and may raise."""
    wanted = {s.warm - 1: i for i, s in enumerate(segments) if s.warm > 0}
    found: list[Motion] = [None] * len(segments)
    stabilizer = Stabilizer()
    for index, rgb in decoded(src, size, 0, max(wanted, default=-1) + 1, limits):
        stabilizer.follow(gray(rgb))
        if index in wanted:
            found[wanted[index]] = (float(stabilizer.motion[0]), float(stabilizer.motion[1]))
        if stop and index % 16 == 0:
            stop(index)
    return found


def render_segment(frames: Frames, src: Path, size: tuple[int, int], segment: Segment, motion: Motion = None,
                   limits: VideoLimits = VideoLimits(), check: Callable[[int], None] | None = None
                   ) -> Iterator[np.ndarray]:
    """The output frames of ``segment`` of ``src`` (none for a segment past the clip's real end).
    ``motion`` (from ``track``) starts the stabilizer where a single pass would be. ``check(n)``
    is called after every frame rendered, warm-up included (n: frames yielded so far), and may
    raise to stop."""
    stabilizer, given = frames.stabilizer, 0
    for index, rgb in decoded(src, size, max(0, segment.warm - 1), segment.stop, limits):
        if index < segment.warm:  # the frame before the warm-up: what the path was measured on
            if stabilizer is not None and motion is not None:
                stabilizer.resume(motion, gray(rgb))
            continue
        out = frames(rgb)
        if index >= segment.first:
            yield out
            given += 1
        if check:
            check(given)


def encode(outputs: Iterable[np.ndarray], dst: Path, size: tuple[int, int], fps: Fraction) -> int:
    """``outputs`` as the MP4 ``dst`` (video only, from a keyframe: a segment ``join`` can use);
    the frame count."""
    writer = Writer(dst, size, fps)
    try:
        for out in outputs:
            writer.frame(out)
    finally:
        writer.close()
    return writer.frames


def stylize_video(stylizer: Stylizer, src: Path, dst: Path, styles: Sequence[object],
                  options: Options = Options(content_size=0), *, stabilize: bool = True,
                  limits: VideoLimits = VideoLimits(), progress: Callable[[int, int], None] | None = None
                  ) -> VideoInfo:
    """Stylize the clip ``src`` into the MP4 ``dst`` in one pass: the whole clip as one segment,
    joined with its audio. ``styles`` and ``options`` as for ``Stylizer.prepare`` (no mask);
    ``progress(done, total)`` follows the frames and may raise to stop. Returns the input's info."""
    info = probe(src, limits)
    size = output_size(info, options.content_size, limits.pixels)
    part = dst.with_name(dst.name + ".part.mp4")
    try:
        frames = Frames(stylizer, styles, options, Stabilizer() if stabilize else None)
        follow = progress and (lambda n: progress(n, max(info.frames, n)))
        if encode(render_segment(frames, src, size, Segment(0, None, 0), None, limits, follow), part, size,
                  info.fps) == 0:
            raise InvalidVideo("the video has no frames that can be decoded")
        join([part], src, dst)
    finally:
        part.unlink(missing_ok=True)
    return info


Timed = tuple[float, int, av.Packet]  # (seconds, order, packet): packets of two files merged by time


def join(parts: Sequence[Path], src: Path, dst: Path) -> int:
    """The segments ``parts`` (in order; empty ones skipped) as one MP4 ``dst`` with the audio of
    ``src``, faststart; the frame count."""
    with ExitStack() as stack:
        inputs = [stack.enter_context(av.open(str(p), "r")) for p in parts if p.exists() and p.stat().st_size]
        inputs = [c for c in inputs if c.streams.video and c.streams.video[0].frames != 0]
        if not inputs:
            raise InvalidVideo("the video has no frames that can be decoded")
        original = stack.enter_context(open_video(src))
        out = stack.enter_context(av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}))
        video = out.add_stream_from_template(inputs[0].streams.video[0])
        counted: list[int] = [0]
        audio = _Audio(out, original.streams.audio[0]) if original.streams.audio else None
        streams = [_video_packets(inputs, counted)] + ([audio.packets(original)] if audio else [])
        for _, _, packet in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
            if packet.stream.type == "video":
                packet.stream = video
                out.mux(packet)
            else:
                audio.mux(packet)
        if audio:
            audio.close()
        return counted[0]


def _video_packets(inputs: Sequence[av.container.InputContainer], counted: list[int]) -> Iterator[Timed]:
    """Every segment's packets in order, each segment's timestamps moved on by the frames before it
    (``counted[0]`` ends as the total)."""
    for c in inputs:
        v = c.streams.video[0]
        tb, rate = v.time_base, v.average_rate or v.guessed_rate
        shift = round(Fraction(counted[0]) / rate / tb)
        for packet in c.demux(v):
            if packet.dts is None:  # the flush packet
                continue
            packet.pts += shift
            packet.dts += shift
            counted[0] += 1
            yield float(packet.dts * tb), 0, packet


class _Audio:
    """The original's audio into ``out``: copied when MP4 carries its codec, else AAC."""

    def __init__(self, out: av.container.OutputContainer, stream: av.audio.AudioStream) -> None:
        self.out, self.copy = out, stream.codec_context.name in MP4_AUDIO
        if self.copy:
            self.stream = out.add_stream_from_template(stream)
        else:
            self.stream = out.add_stream("aac", rate=stream.codec_context.sample_rate or 48000)
            self.stream.layout = stream.codec_context.layout.name if stream.codec_context.layout else "stereo"

    def packets(self, original: av.container.InputContainer) -> Iterator[Timed]:
        a = original.streams.audio[0]
        for packet in original.demux(a):
            if packet.dts is not None:
                yield float(packet.dts * a.time_base), 1, packet

    def mux(self, packet: av.Packet) -> None:
        if self.copy:
            packet.stream = self.stream
            self.out.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder counts samples itself
            self.out.mux(self.stream.encode(frame))

    def close(self) -> None:
        if not self.copy:
            self.out.mux(self.stream.encode())
