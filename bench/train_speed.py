"""Training step speed: it/s for batch 8 at 128 and 256 crops, fp32 vs bf16, glibc vs jemalloc.

    .venv/bin/python bench/train_speed.py [--steps 12] [--device cpu]

Each configuration runs in a fresh process (the allocator is chosen at process start) on generated
images, skips the first 3 steps (warm-up), and prints a table. Asserts nothing. Run it alone: a
second busy process on a 2-core machine halves these numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from model.runtime import JEMALLOC, JEMALLOC_ENV  # noqa: E402

CHILD = r"""
import sys, time, torch
sys.path.insert(0, {repo!r})
from model.decoder import random_decoder
from model.runtime import autocast_dtype
from model.vgg import load_encoder
from training.losses import objective
dev = torch.device({device!r}); amp = autocast_dtype({precision!r}, dev)
enc = load_encoder().to(dev, memory_format=torch.channels_last)
dec = random_decoder(0).to(dev, memory_format=torch.channels_last)
opt = torch.optim.Adam(dec.parameters(), 1e-4)
g = torch.Generator().manual_seed(0)
times = []
for i in range({steps}):
    c = torch.rand(8, 3, {crop}, {crop}, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
    s = torch.rand(8, 3, {crop}, {crop}, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
    if dev.type == "cuda": torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
        t = objective(enc, dec, c, s)
        loss = t.content + 10 * sum(t.style)
    opt.zero_grad(); loss.backward(); opt.step()
    if dev.type == "cuda": torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
t = sorted(times[3:])[len(times[3:]) // 2]
print(f"RESULT {{t:.4f}}")
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    allocators = ["glibc", "jemalloc"] if args.device == "cpu" and Path(JEMALLOC).exists() else ["default"]
    low = "bf16" if args.device == "cpu" else "fp16"
    print(f"{'crop':>5} {'precision':>9} {'allocator':>9} {'s/step':>8} {'it/s':>6}")
    for crop in (128, 256):
        for precision in ("fp32", low):
            for alloc in allocators:
                env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
                if alloc == "jemalloc":
                    env.update(JEMALLOC_ENV)
                code = CHILD.format(repo=str(REPO), device=args.device, precision=precision, steps=args.steps,
                                    crop=crop)
                out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                     cwd=tempfile.gettempdir())
                m = re.search(r"RESULT ([0-9.]+)", out.stdout)
                if not m:
                    print(out.stderr[-2000:], file=sys.stderr)
                    continue
                t = float(m.group(1))
                print(f"{crop:>5} {precision:>9} {alloc:>9} {t:8.3f} {1 / t:6.2f}", flush=True)


if __name__ == "__main__":
    main()
