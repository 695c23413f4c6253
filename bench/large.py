"""Large images through the HTTP API: time and the server's peak RSS per size, and tiled against
one whole pass. Prints a table; asserts nothing. Run it alone on the machine.

    .venv/bin/python bench/large.py [--sides 1024,2048,4096,8192] [--device auto]

Each size gets a fresh ``python -m service`` with the default settings (so each peak RSS is that
size's own): a JPEG photo (a preset scaled up) at ``content_size=0`` with a registered style, PNG
out, streamed; timed is the photo's first render, after one of another photo of that size. Then the same 2048² request to a server whose tile is larger than the image (one
whole pass) and the PSNR between the two answers.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests")]
from serverproc import run_server  # noqa: E402

PHOTO = REPO / "weights" / "presets" / "bridge-at-sunset.jpg"
STYLE = REPO / "weights" / "presets" / "swamp.jpg"


def photo(side: int, flip: bool = False) -> bytes:
    buf = io.BytesIO()
    img = Image.open(PHOTO).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    (img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def request(server, content: bytes, warm: bytes | None = None) -> tuple[float, bytes]:
    """The first render of ``content`` (after one of ``warm``, another photo of its size: the
    process's first request of a size measures its convolutions, which no later one pays)."""
    with server.client(timeout=900) as c:
        sid = c.post("/styles", files={"style": ("s.jpg", STYLE.read_bytes(), "image/jpeg")}).json()["id"]
        if warm is not None:
            c.post("/stylize", files={"content": ("w.jpg", warm, "image/jpeg")}, data={"style_id": sid, "content_size": "0"})
        t = time.perf_counter()
        r = c.post("/stylize", files={"content": ("c.jpg", content, "image/jpeg")},
                   data={"style_id": sid, "content_size": "0"})
        seconds = time.perf_counter() - t
    assert r.status_code == 200, r.text[:300]
    return seconds, r.content


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sides", type=lambda s: [int(x) for x in s.split(",")], default=[1024, 2048, 4096, 8192])
    p.add_argument("--device", default="auto")
    p.add_argument("--no-warm", dest="warm", action="store_false", help="time each server's first request")
    args = p.parse_args()
    env = {"ADAIN_DEVICE": args.device}
    print(f"{'size':>11} {'MP':>5} {'upload':>8} {'seconds':>8} {'s/MP':>6} {'peak RSS':>9}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            content = photo(side)
            with run_server(Path(tmp) / f"s{side}", **env) as server:
                seconds, out = request(server, content, photo(side, flip=True) if args.warm else None)
                peak = server.rss_mb()[1]
            img = Image.open(io.BytesIO(out))
            assert img.size == (side, side), img.size
            results[side] = out
            mp = side * side / 1e6
            print(f"{side:>5}x{side:<5} {mp:5.1f} {len(content) / 2**20:6.1f}MB {seconds:8.1f} {seconds / mp:6.2f} "
                  f"{peak:7.0f}MB", flush=True)
        if 2048 in results:
            with run_server(Path(tmp) / "whole", ADAIN_TILE_SIZE="4096", **env) as server:
                seconds, out = request(server, photo(2048))
                peak = server.rss_mb()[1]
            a, b = (np.asarray(Image.open(io.BytesIO(x)).convert("RGB"), np.float64) for x in (results[2048], out))
            d = np.abs(a - b)
            psnr = 10 * np.log10(255 ** 2 / max(np.mean(d ** 2), 1e-12))
            print(f"2048² in one whole pass: {seconds:.1f} s, peak RSS {peak:.0f} MB; tiled vs whole: PSNR {psnr:.1f} dB, "
                  f"max difference {d.max():.0f} levels, mean {d.mean():.3f}")


if __name__ == "__main__":
    main()
