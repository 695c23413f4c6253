"""Video: decode, stylize, encode (model/video.py), through the CLI and the library; bad files."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import clips
from helpers import noise_image
from model.errors import InvalidVideo, VideoTooLarge
from model.plan import Options
from model.segments import stylize_video
from model.video import VideoLimits, probe, read_video

ADAIN = Path(sys.executable).with_name("adain")


def streams(path: Path) -> dict[str, str]:
    with av.open(str(path)) as c:
        return {s.type: s.codec_context.name for s in c.streams}


@pytest.fixture
def style_file(tmp_path: Path) -> Path:
    noise_image(64, 64, seed=2).save(tmp_path / "style.png")
    return tmp_path / "style.png"


def test_cli_stylizes_a_pan_with_audio(tmp_path, style_file, decoder_path):
    src = clips.write(tmp_path / "pan.mp4", clips.pan(96, 64, 12), fps=24, audio=True)
    out = tmp_path / "out" / "stylized.mp4"
    r = subprocess.run([str(ADAIN), "video", str(src), str(style_file), "-o", str(out), "--alpha", "0.8",
                        "--precision", "fp32", "--device", "cpu", "--decoder", str(decoder_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "12 frames at 24 fps" in r.stdout
    info = probe(out)
    assert (info.width, info.height, info.fps, info.frames) == (96, 64, Fraction(24), 12)
    assert streams(out) == {"video": "h264", "audio": "aac"}
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        # the audio is the input's, packet for packet
        with av.open(str(src)) as s:
            assert [bytes(p) for p in c.demux(audio=0) if p.size] == [bytes(p) for p in s.demux(audio=0) if p.size]
    head = out.read_bytes()[:4096]
    assert head.index(b"moov") < head.index(b"mdat") if b"mdat" in head else b"moov" in head  # faststart
    frames, _ = read_video(out)
    assert len(frames) == 12 and frames[0].std() > 1  # a picture, not a blank


def test_cli_refuses_a_file_that_is_not_a_video(tmp_path, style_file, decoder_path):
    (tmp_path / "x.mp4").write_bytes(b"not a video at all")
    r = subprocess.run([str(ADAIN), "video", str(tmp_path / "x.mp4"), str(style_file), "-o", str(tmp_path / "o.mp4"),
                        "--device", "cpu", "--decoder", str(decoder_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "not a video" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("name,codec,audio,pix_fmt", [
    ("clip.webm", "libvpx-vp9", True, "yuv420p"), ("clip.webm", "libvpx", False, "yuv420p"),
    ("clip.mov", "libx264", True, "yuv420p"), ("clip.mkv", "libx264", False, "yuv420p"),
    ("clip.gif", "gif", False, "rgb8")])
def test_containers_and_codecs_in(tmp_path, stylizer, style_file, name, codec, audio, pix_fmt):
    src = clips.write(tmp_path / name, clips.moving_shape(64, 48, 6), fps=10, codec=codec, audio=audio,
                      pix_fmt=pix_fmt)
    out = tmp_path / "out.mp4"
    stylize_video(stylizer, src, out, [style_file])
    info = probe(out)
    assert (info.width, info.height, info.fps, info.frames) == (64, 48, Fraction(10), 6)
    assert streams(out) == ({"video": "h264", "audio": "opus" if name.endswith("webm") else "aac"} if audio
                            else {"video": "h264"})


def test_audio_mp4_cannot_carry_is_reencoded_to_aac(tmp_path, stylizer, style_file):
    src = tmp_path / "pcm.mov"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=48000)
        a.layout = "stereo"
        for f in clips.moving_shape(64, 48, 5):
            c.mux(v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(v.encode())
        for i in range(0, 24000, 2048):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.int16), format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48000, i
            c.mux(a.encode(frame))
    stylize_video(stylizer, src, tmp_path / "out.mp4", [style_file])
    assert streams(tmp_path / "out.mp4") == {"video": "h264", "audio": "aac"}


@pytest.mark.parametrize("clockwise", [90, 270])
def test_rotated_clips_come_out_upright(tmp_path, stylizer, style_file, clockwise):
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:12, :16] = 255  # a white mark at the top left
    src = clips.set_rotation(clips.write(tmp_path / "phone.mp4", [frame] * 3, fps=10), clockwise)
    info = probe(src)
    assert (info.width, info.height) == (48, 64)
    upright, _ = read_video(src)
    row, col = np.argwhere(upright[0].mean(-1) > 200).mean(0)
    # where a player shows it: turned clockwise, the top left goes to the top right; anticlockwise, bottom left
    assert (row < 20 and col > 30) if clockwise == 90 else (row > 40 and col < 20), (row, col)
    stylize_video(stylizer, src, tmp_path / "out.mp4", [style_file], stabilize=False)
    out = probe(tmp_path / "out.mp4")
    assert (out.width, out.height, out.rotation) == (48, 64, 0)


def test_content_size_and_odd_sizes(tmp_path, stylizer, style_file):
    src = clips.write(tmp_path / "odd.mkv", clips.moving_shape(99, 66, 4), fps=10, pix_fmt="yuv444p")
    stylize_video(stylizer, src, tmp_path / "keep.mp4", [style_file])
    assert probe(tmp_path / "keep.mp4").width == 98  # yuv420p needs even sides
    stylize_video(stylizer, src, tmp_path / "small.mp4", [style_file], Options(content_size=40))
    small = probe(tmp_path / "small.mp4")
    assert (small.width, small.height, small.frames) == (60, 40, 4)


def test_bad_videos_are_refused_before_any_work(tmp_path):
    pan = clips.write(tmp_path / "pan.mp4", clips.pan(64, 48, 10), fps=10)
    (tmp_path / "text.mp4").write_bytes(b"hello, not a video")
    (tmp_path / "cut.mp4").write_bytes(pan.read_bytes()[: len(pan.read_bytes()) // 3])  # truncated
    (tmp_path / "image.mp4").write_bytes(clips_png())
    with av.open(str(tmp_path / "empty.mkv"), "w") as c:  # a video stream, zero frames
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    avi = clips.write(tmp_path / "mpeg4.avi", clips.moving_shape(64, 48, 3), codec="mpeg4")
    (tmp_path / "unknown.avi").write_bytes(avi.read_bytes().replace(b"FMP4", b"ZZZZ"))  # a codec FFmpeg lacks
    for name in ("text.mp4", "cut.mp4", "empty.mkv", "unknown.avi", "image.mp4"):
        with pytest.raises(InvalidVideo):
            probe(tmp_path / name)
    hours = tmp_path / "hours.mp4"  # two frames ten hours apart: a header claiming 10 h
    with av.open(str(hours), "w") as c:
        v = c.add_stream("libx264", rate=1)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for t in (0, 36000):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = t
            c.mux(v.encode(frame))
        c.mux(v.encode())
    with pytest.raises(VideoTooLarge, match="36001"):
        probe(hours, VideoLimits(seconds=300))
    with pytest.raises(VideoTooLarge, match="pixels per frame"):
        probe(pan, VideoLimits(input_pixels=64 * 47))


def test_output_frame_limit(tmp_path, stylizer, style_file):
    src = clips.write(tmp_path / "pan.mp4", clips.pan(64, 48, 3), fps=10)
    with pytest.raises(VideoTooLarge, match="content_size"):
        stylize_video(stylizer, src, tmp_path / "out.mp4", [style_file], limits=VideoLimits(pixels=60 * 40))
    assert not (tmp_path / "out.mp4").exists()


def clips_png() -> bytes:
    from helpers import png

    return png(noise_image(32, 32))
