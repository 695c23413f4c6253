"""Stylizer on a GPU: fp16 vs fp32 output (PSNR) and single-request latency per size.

    python bench/cuda_check.py [--decoder weights/decoder.safetensors] [--device cuda]

Prints a table; asserts nothing. Falls back to the CPU (fp32 vs bf16) when there is no GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from common import image  # noqa: E402
from model.paths import DECODER  # noqa: E402
from model.stylizer import Stylizer  # noqa: E402


def psnr(a: Image.Image, b: Image.Image) -> float:
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(10 * np.log10(255**2 / max((d**2).mean(), 1e-12)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--decoder", type=Path, default=DECODER)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=20)
    args = p.parse_args()
    low = "fp16" if args.device.startswith("cuda") else "bf16"
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        print(torch.cuda.get_device_name(), "torch", torch.__version__)
    models = {prec: Stylizer.load(args.decoder, device=args.device, precision=prec) for prec in ("fp32", low)}
    print(f"{'size':>6} {'fp32 ms':>9} {low + ' ms':>9} {'PSNR dB':>8}")
    for size in (256, 512, 1024):
        content, style = image(size, 1), image(size, 2)
        outs, times = {}, {}
        for prec, st in models.items():
            code = st.encode_style(style, size)
            st.stylize(content, [code], content_size=0)  # warm-up (cudnn autotune)
            ts = []
            for _ in range(args.n):
                if st.device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                outs[prec] = st.stylize(content, [code], content_size=0)
                ts.append(time.perf_counter() - t)
            times[prec] = statistics.median(ts) * 1000
        print(f"{size:>6} {times['fp32']:9.1f} {times[low]:9.1f} {psnr(outs['fp32'], outs[low]):8.1f}")
    print(f"load seconds: {models[low].load_seconds}")


if __name__ == "__main__":
    main()
