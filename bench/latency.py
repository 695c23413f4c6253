"""End-to-end latency vs the bare Stylizer, 512x512 content with a registered style.

    .venv/bin/python bench/latency.py [--size 512] [--n 10] [--precision auto]

Prints medians (never asserts): the bare ``Stylizer.stylize`` time with a cached style code, and
the time of ``POST /stylize`` with a ``style_id`` against a real uvicorn process on 127.0.0.1.
Uses weights/decoder.safetensors when present, else a random-init decoder (same speed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e"), str(REPO / "bench")]

from common import image, png  # noqa: E402
from model.decoder import random_decoder, save_decoder  # noqa: E402
from model.paths import DECODER  # noqa: E402
from model.stylizer import Stylizer  # noqa: E402
from serverproc import run_server  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--precision", default="auto")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    decoder = DECODER if DECODER.is_file() else save_decoder(random_decoder(0), tmp, "safetensors")
    content, style = image(args.size, 1), image(args.size, 2)

    stylizer = Stylizer.load(decoder, precision=args.precision)
    stylizer.warmup(args.size)
    code = stylizer.encode_style(style, args.size)
    bare = []
    for _ in range(args.n):
        t = time.perf_counter()
        stylizer.stylize(content, [code], content_size=0)
        bare.append(time.perf_counter() - t)
    del stylizer

    env = {"ADAIN_DECODER": str(decoder), "ADAIN_PRECISION": args.precision, "ADAIN_PRESETS_DIR": str(tmp / "none"),
           "ADAIN_DEFAULT_CONTENT_SIZE": "0", "ADAIN_DEFAULT_STYLE_SIZE": str(args.size)}
    body = png(content)
    with run_server(tmp, **env) as server, server.client() as c:
        sid = c.post("/styles", files={"style": ("s.png", png(style), "image/png")}).json()["id"]
        c.post("/stylize", files={"content": ("c.png", body, "image/png")}, data={"style_id": sid})  # warm
        http = []
        for _ in range(args.n):
            t = time.perf_counter()
            r = c.post("/stylize", files={"content": ("c.png", body, "image/png")}, data={"style_id": sid})
            http.append(time.perf_counter() - t)
            assert r.status_code == 200
        timing = r.headers["server-timing"]
    b, h = statistics.median(bare), statistics.median(http)
    print(f"{'':28}{'median s':>10}{'min s':>10}")
    print(f"{'bare Stylizer.stylize':28}{b:10.3f}{min(bare):10.3f}")
    print(f"{'HTTP POST /stylize style_id':28}{h:10.3f}{min(http):10.3f}")
    print(f"HTTP / bare = {h / b:.2f}   ({args.size}x{args.size}, n={args.n}, precision={args.precision}, "
          f"jemalloc={'yes' if 'jemalloc' in os.environ.get('LD_PRELOAD', '') else 'no'})")
    print(f"last Server-Timing: {timing}")


if __name__ == "__main__":
    main()
