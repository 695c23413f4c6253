"""An update of the same photo (α, colours, weights, mask or styles changed) against its first
render, over HTTP with the default settings; and what sending a 20 MB photo again costs through
nginx against sending its content id. Prints a table; asserts nothing. Run it alone on the machine.

    .venv/bin/python bench/updates.py [--n 7] [--size 512]

First renders are of photos the server has not seen (a new crop each time: the content's features
are encoded); updates send the same photo with another α (its features kept: the decoder alone),
first as the file again, then as ``content_id``. Medians of ``--n``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests")]
from nginxproc import run_nginx  # noqa: E402
from serverproc import run_server  # noqa: E402

PHOTO = REPO / "weights" / "presets" / "bridge-at-sunset.jpg"
STYLE = REPO / "weights" / "presets" / "swamp.jpg"


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def crops(side: int, n: int) -> list[bytes]:
    """``n`` different photos of side² (crops of a preset scaled up)."""
    src = Image.open(PHOTO).convert("RGB").resize((side * 2, side * 2), Image.Resampling.BICUBIC)
    return [jpeg(src.crop((i * 7, i * 5, i * 7 + side, i * 5 + side))) for i in range(n)]


def timed(client, content: bytes | None, data: dict) -> tuple[float, str]:
    files = {"content": ("c.jpg", content, "image/jpeg")} if content else None
    t = time.perf_counter()
    r = client.post("/stylize", files=files, data=data)
    seconds = time.perf_counter() - t
    assert r.status_code == 200, r.text[:300]
    return seconds, r.headers["x-content-cache"], r.headers["x-content-id"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=7)
    p.add_argument("--size", type=int, default=512)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, run_server(Path(tmp) / "server") as server, \
            run_nginx(Path(tmp) / "nginx", server.url.removeprefix("http://")) as proxy, \
            httpx.Client(base_url=proxy, timeout=900) as c:
        sid = c.post("/styles", files={"style": ("s.jpg", STYLE.read_bytes(), "image/jpeg")}).json()["id"]
        base = {"style_id": sid, "content_size": str(args.size)}
        photos = crops(args.size, args.n + 1)
        timed(c, photos[-1], base)  # the first request of a process pays for lazy set-up
        first = [timed(c, photo, base) for photo in photos[:args.n]]
        assert {k for _, k, _ in first} == {"miss"}
        again = [timed(c, photos[0], {**base, "alpha": f"{0.5 + i / 40:.3f}"}) for i in range(args.n)]
        cid = first[0][2]
        by_id = [timed(c, None, {**base, "content_id": cid, "alpha": f"{0.5 + i / 40:.3f}"}) for i in range(args.n)]
        assert {k for _, k, _ in again + by_id} == {"hit"}
        med = {name: statistics.median(t for t, _, _ in runs) for name, runs in
               (("first render", first), ("update, file again", again), ("update, content_id", by_id))}
        print(f"{args.size}² through nginx, medians of {args.n}:")
        for name, s in med.items():
            print(f"  {name:20s} {s * 1000:8.0f} ms   {s / med['first render']:.2f}x the first render")
        # a 20 MB photo: its upload against its id (the render is the same: features kept)
        big = Image.effect_noise((3400, 3400), 60).convert("RGB")
        blob = jpeg(big, 97)
        _, _, big_id = timed(c, blob, base)
        upload = [timed(c, blob, {**base, "alpha": "0.7"})[0] for _ in range(3)]
        ident = [timed(c, None, {**base, "content_id": big_id, "alpha": "0.7"})[0] for _ in range(3)]
        print(f"a {len(blob) / 2**20:.1f} MB photo at {args.size}²: file again {statistics.median(upload) * 1000:.0f} ms, "
              f"content_id {statistics.median(ident) * 1000:.0f} ms (medians of 3)")


if __name__ == "__main__":
    main()
