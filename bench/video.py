"""Video: flicker and style against per-frame stylization, and frames/s. Prints tables; asserts
nothing. Run it alone on the machine.

    .venv/bin/python bench/video.py [--frames 48] [--speed-frames 24] [--device auto]

Quality, on generated 320x240 clips (tests/clips.py) with the shipped decoder and a preset style:
Lai et al.'s warping error (model/temporal.py) and the style distance (training/evaluate.py, with
the model card's channel scales) of per-frame stylization, of the grid alignment alone, and of the full method (alignment + blending).
Speed: ``stylize_video`` end to end (decode, stylize, stabilize, encode H.264) on pans at 256p,
480p and 720p, with and without stabilization.
Segments (model/segments.py): a pan rendered in segments against one pass, per warm-up length K:
PSNR to the single pass, warping error across the seams vs inside segments, and without the
track (each segment's grid phase from zero); the warm-up's extra frames at the default segment
length. Starvation: /stylize's latency idle and beside a video job on a real server. Replicas (``--replicas``): a 480p job through real servers on a real redis-server, one
replica vs two, each pinned to a core of its own (taskset, one torch thread).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]
import clips  # noqa: E402
from common import psnr  # noqa: E402
from model.images import to_tensor  # noqa: E402
from model.paths import WEIGHTS_DIR  # noqa: E402
from model.plan import Options  # noqa: E402
from model.stylizer import Stylizer  # noqa: E402
from model.temporal import Stabilizer, warping_error  # noqa: E402
from model.segments import WARMUP, encode, join, render_segment, split, stylize_video, track  # noqa: E402
from model.video import Frames, read_video  # noqa: E402
from training.evaluate import style_distance  # noqa: E402
from training.losses import load_style_scales  # noqa: E402

STYLE = REPO / "weights" / "presets" / "swamp.jpg"


def quality(stylizer: Stylizer, n: int) -> None:
    style = Image.open(STYLE).convert("RGB")
    code = stylizer.encode_style(style, 512)
    s = stylizer.net_input(to_tensor(style.resize((512, round(512 * style.height / style.width)))))

    scales = load_style_scales(WEIGHTS_DIR / "heldout_style_scales.safetensors")

    def distance(outs: list[np.ndarray]) -> float:
        with torch.inference_mode():
            return style_distance(stylizer.encoder, [stylizer.net_input(to_tensor(Image.fromarray(o))) for o in outs],
                                  s, scales)

    cases = {"pan 2 px/frame": clips.pan(320, 240, n), "pan 3.3 px/frame": clips.pan(320, 240, n, step=3.3),
             "moving object": clips.moving_shape(320, 240, n), "cut": clips.cut(320, 240, n)}
    print(f"\nquality: 320x240, {n} frames, {stylizer.device}/{stylizer.precision}; warping error (lower = "
          "steadier) and style distance (lower = closer to the style)\n")
    print("| clip | method | warping error | vs per-frame | style distance | vs per-frame |")
    print("|---|---|---:|---:|---:|---:|")
    for name, frames in cases.items():
        per = [render(f) for render in [Frames(stylizer, [code], Options(content_size=0), None)] for f in frames]
        e0, d0 = warping_error(frames, per), distance(per)
        print(f"| {name} | per-frame | {e0:.5f} | | {d0:.4f} | |")
        for label, stab in (("alignment only", Stabilizer(keep=0)), ("ours (alignment + blending)", Stabilizer())):
            render = Frames(stylizer, [code], Options(content_size=0), stab)
            outs = [render(f) for f in frames]
            e, d = warping_error(frames, outs), distance(outs)
            print(f"| {name} | {label} | {e:.5f} | {100 * (e / e0 - 1):+.0f} % | {d:.4f} | {100 * (d / d0 - 1):+.1f} % |")


def speed(stylizer: Stylizer, n: int) -> None:
    print(f"\nspeed: stylize_video end to end, {n}-frame pans, {stylizer.device}/{stylizer.precision}\n")
    print("| frames | per-frame frames/s | stabilized frames/s | stabilization cost |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        for w, h in ((342, 256), (854, 480), (1280, 720)):
            src = clips.write(Path(d) / f"{h}.mp4", clips.pan(w, h, n), fps=24)
            rates = []
            for stabilize in (False, True):
                start = time.perf_counter()
                stylize_video(stylizer, src, Path(d) / "out.mp4", [STYLE], Options(content_size=0), stabilize=stabilize)
                rates.append(n / (time.perf_counter() - start))
            print(f"| {w}x{h} | {rates[0]:.2f} | {rates[1]:.2f} | {100 * (rates[0] / rates[1] - 1):+.0f} % time |")


def seams(stylizer: Stylizer, n: int = 72, length: int = 24, size: tuple[int, int] = (640, 360)) -> None:
    """One pass vs segments of ``length`` on a pan, per warm-up K: the rendered frames, and the
    MP4 (each segment's first frame is a keyframe: the encoder's share of a seam)."""
    frames = clips.pan(*size, n)
    code = stylizer.encode_style(Image.open(STYLE).convert("RGB"), 512)
    starts = list(range(length, n, length))

    def ratio(inputs: list[np.ndarray], out: list[np.ndarray]) -> tuple[float, float, float]:
        pair = [warping_error(inputs[t - 1:t + 1], out[t - 1:t + 1]) for t in range(1, n)]
        seam = float(np.mean([pair[t - 1] for t in starts]))
        inside = float(np.mean([e for t, e in enumerate(pair, 1) if t not in starts]))
        return seam, inside, seam / inside

    with tempfile.TemporaryDirectory() as d:
        src = clips.write(Path(d) / "pan.mp4", frames, fps=24)
        inputs, _ = read_video(src)
        single = Frames(stylizer, [], Options(content_size=0), Stabilizer(), codes=(code,))
        raw_one = [single(f) for f in inputs]
        encode(raw_one, Path(d) / "one.mp4", size, Fraction(24))
        one, _ = read_video(Path(d) / "one.mp4")
        print(f"\nsegments: a {n}-frame {size[0]}x{size[1]} pan in segments of {length} ({len(starts)} seams), "
              f"{stylizer.device}/{stylizer.precision}; warping error at the seams / inside segments, of the "
              f"rendered frames and of the MP4 (one pass: {ratio(inputs, raw_one)[2]:.2f} / "
              f"{ratio(inputs, one)[2]:.2f})\n")
        print("| warm-up K | track | rendered: PSNR to one pass (worst) | seams/inside | MP4: PSNR to one pass (worst / mean) "
              "| seams | inside | seams/inside |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for k, tracked in ((0, True), (4, True), (8, True), (16, True), (8, False)):
            segments = split(n, length, k)
            motions = track(src, size, segments) if tracked else [None] * len(segments)
            raw, parts = [], [Path(d) / f"s{i}.mp4" for i in range(len(segments))]
            for i, segment in enumerate(segments):
                render = Frames(stylizer, [], Options(content_size=0), Stabilizer(), codes=(code,))
                outs = list(render_segment(render, src, size, segment, motions[i]))
                encode(outs, parts[i], size, Fraction(24))
                raw += outs
            join(parts, src, Path(d) / "joined.mp4")
            out, _ = read_video(Path(d) / "joined.mp4")
            db = [psnr(a, b) for a, b in zip(one, out)]
            seam, inside, r = ratio(inputs, out)
            print(f"| {k} | {'yes' if tracked else 'no'} | {min(psnr(a, b) for a, b in zip(raw_one, raw)):.1f} dB | "
                  f"{ratio(inputs, raw)[2]:.2f} | {min(db):.1f} / {np.mean(db):.1f} dB | {seam:.5f} | {inside:.5f} | "
                  f"{r:.2f} |")
        start = time.perf_counter()
        track(src, size, split(n, length))
        per = (time.perf_counter() - start) / n
    k, default = WARMUP, 60
    print(f"\nwarm-up overhead at the default segment length ({default} frames, K = {k}): {k} extra frames "
          f"rendered per segment after the first = {100 * k / default:.0f} % more frames; the track pass: "
          f"{per * 1000:.1f} ms a {size[0]}x{size[1]} frame, once per clip")


def replicas(n: int = 72, length: int = 24) -> None:
    """frames/s of one 854x480 job on 1 vs 2 replicas, each pinned to a core of its own."""
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from redisproc import run_redis
    from serverproc import run_server

    print(f"\nreplicas: an {n}-frame 854x480 pan, segments of {length}, a real redis-server; each replica "
          "pinned to its own core (taskset), ADAIN_TORCH_THREADS=1\n")
    print("| replicas | seconds | frames/s | rendered_by |")
    print("|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as d:
        clip = clips.write(Path(d) / "480.mp4", clips.pan(854, 480, n), fps=24).read_bytes()
        with run_redis(Path(d) / "redis") as redis:
            env = {"ADAIN_REDIS_URL": redis.url, "ADAIN_VIDEO_FILES_DIR": str(Path(d) / "shared-videos"), "ADAIN_VIDEO_SEGMENT_FRAMES": str(length), "ADAIN_TORCH_THREADS": "1",
                   "ADAIN_DEFAULT_CONTENT_SIZE": "0"}
            for count in (1, 2):
                with contextlib.ExitStack() as stack:
                    servers = [stack.enter_context(run_server(Path(d) / f"r{count}{i}", ADAIN_REPLICA_ID=f"core{i}",
                                                              **env)) for i in range(count)]
                    for i, server in enumerate(servers):
                        os.sched_setaffinity(server.proc.pid, {i})  # taskset -p
                        for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
                            os.sched_setaffinity(int(task.name), {i})
                    with servers[0].client() as c:
                        start = time.perf_counter()
                        r = c.post("/videos", files={"video": ("c.mp4", clip, "video/mp4"),
                                                     "style": ("s.jpg", STYLE.read_bytes(), "image/jpeg")})
                        job = r.json()["id"]
                        while (s := c.get(f"/videos/{job}").json())["state"] in ("queued", "running"):
                            time.sleep(0.2)
                        took = time.perf_counter() - start
                    print(f"| {count} | {took:.1f} | {n / took:.2f} | {s['rendered_by']} |")


def starvation(rounds: int = 7) -> None:
    """/stylize latency at 256² on a real server, idle and while a 640x480 video job renders: the
    video threads' lower priority (service/videos.py) is what keeps the ratio down."""
    import statistics

    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from helpers import STYLE_A, files, noise_image, png
    from serverproc import run_server

    photo = png(noise_image(256, 256, seed=3))
    with tempfile.TemporaryDirectory() as d, run_server(Path(d), ADAIN_DEFAULT_CONTENT_SIZE="0") as server, \
            server.client(timeout=600) as c:
        def latency() -> float:
            start = time.perf_counter()
            assert c.post("/stylize", files=files(photo, STYLE_A)).status_code == 200
            return time.perf_counter() - start

        latency()
        idle = statistics.median(latency() for _ in range(rounds))
        clip = clips.write(Path(d) / "480.mp4", clips.pan(640, 480, 200), fps=24).read_bytes()
        job = c.post("/videos", files={"video": ("c.mp4", clip, "video/mp4"),
                                       "style": ("s.png", STYLE_A, "image/png")}).json()["id"]
        while c.get(f"/videos/{job}").json()["frames_done"] < 3:
            time.sleep(0.1)
        busy = statistics.median(latency() for _ in range(rounds))
        running = c.get(f"/videos/{job}").json()["state"] == "running"
        c.delete(f"/videos/{job}")
    print(f"\nstarvation: /stylize 256² idle {idle * 1000:.0f} ms, during a 640x480 video job {busy * 1000:.0f} ms "
          f"({busy / idle:.2f}x; the video {'still' if running else 'no longer'} running at the end)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=48, help="frames per quality clip")
    p.add_argument("--speed-frames", type=int, default=24, help="frames per speed clip")
    p.add_argument("--device", default="auto")
    p.add_argument("--only", choices=("quality", "speed", "segments", "replicas", "starvation"), action="append",
                   help="run only these parts (repeatable; default all)")
    args = p.parse_args()
    parts = args.only or ["quality", "speed", "segments", "replicas", "starvation"]
    stylizer = Stylizer.load(device=args.device)
    stylizer.warmup()
    if "quality" in parts:
        quality(stylizer, args.frames)
    if "speed" in parts:
        speed(stylizer, args.speed_frames)
    if "segments" in parts:
        seams(stylizer)
    if "replicas" in parts:
        replicas()
    if "starvation" in parts:
        starvation()


if __name__ == "__main__":
    main()
