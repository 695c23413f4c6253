"""Video: flicker and style against per-frame stylization, and frames/s. Prints tables; asserts
nothing. Run it alone on the machine.

    .venv/bin/python bench/video.py [--frames 48] [--speed-frames 24] [--device auto]

Quality, on generated 320x240 clips (tests/clips.py) with the shipped decoder and a preset style:
Lai et al.'s warping error (model/temporal.py) and the style distance (training/evaluate.py, with
the model card's channel scales) of per-frame stylization, of the grid alignment alone, and of the full method (alignment + blending).
Speed: ``stylize_video`` end to end (decode, stylize, stabilize, encode H.264) on pans at 256p,
480p and 720p, with and without stabilization.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
import clips  # noqa: E402
from model.images import to_tensor  # noqa: E402
from model.paths import WEIGHTS_DIR  # noqa: E402
from model.plan import Options  # noqa: E402
from model.stylizer import Stylizer  # noqa: E402
from model.temporal import Stabilizer, warping_error  # noqa: E402
from model.video import Frames, stylize_video  # noqa: E402
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=48, help="frames per quality clip")
    p.add_argument("--speed-frames", type=int, default=24, help="frames per speed clip")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    stylizer = Stylizer.load(device=args.device)
    stylizer.warmup()
    quality(stylizer, args.frames)
    speed(stylizer, args.speed_frames)


if __name__ == "__main__":
    main()
