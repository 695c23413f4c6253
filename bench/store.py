"""Style store latency: lookups in SQLite and in a real redis-server on loopback, and what a
registered style adds to a /stylize request. Prints numbers; asserts nothing.

    .venv/bin/python bench/store.py [--n 2000] [--http-n 200]

1. ``get`` of a registered style straight from each store (the call /stylize makes per style_id),
   p50 / p99 over --n calls, and ``add`` the same way.
2. Over HTTP, a real ``python -m service`` per store: /stylize of a 32x32 content (so the network
   costs little) by a registered id against the same request by a preset id (presets never touch
   the store), interleaved; the difference of the medians is what the store adds to a request.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "e2e")]
from helpers import files, noise_image, png  # noqa: E402
from model.adain import StyleCode  # noqa: E402
from redisproc import run_redis  # noqa: E402
from serverproc import run_server  # noqa: E402
from service.stores import StyleEntry  # noqa: E402
from service.stores.redis import RedisStyles  # noqa: E402
from service.stores.sqlite import SQLiteStyles  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000


def entry(i: int) -> StyleEntry:
    code = StyleCode(torch.randn(512), torch.rand(512) + 0.1, torch.rand(3, dtype=torch.float64),
                     torch.eye(3, dtype=torch.float64))
    return StyleEntry(f"bench{i:05d}", code, 512, "uploaded", f"style {i}")


def direct(store, n: int) -> None:
    adds = []
    for i in range(n):
        t = time.perf_counter()
        store.add(entry(i))
        adds.append(time.perf_counter() - t)
    gets = []
    for i in range(n):
        t = time.perf_counter()
        assert store.get(f"bench{i % 100:05d}") is not None
        gets.append(time.perf_counter() - t)
    print(f"  {store.backend:>6}: get p50 {pct(gets, 0.5):.3f} ms, p99 {pct(gets, 0.99):.3f} ms; "
          f"add p50 {pct(adds, 0.5):.3f} ms, p99 {pct(adds, 0.99):.3f} ms (n={n})")


def http(tmp: Path, n: int, **env: str) -> None:
    presets = tmp / "presets"
    presets.mkdir(parents=True)
    noise_image(32, 32, seed=5).save(presets / "preset.png")
    env = {"ADAIN_PRESETS_DIR": str(presets), "ADAIN_DEFAULT_CONTENT_SIZE": "32", "ADAIN_DEFAULT_STYLE_SIZE": "32",
           "ADAIN_FRONTEND_DIR": str(tmp / "none"), **env}
    content = png(noise_image(32, 32, seed=1))
    with run_server(tmp, **env) as server, server.client() as c:
        sid = c.post("/styles", files={"style": ("s.png", png(noise_image(32, 32, seed=2)), "image/png")}).json()["id"]
        times: dict[str, list[float]] = {"registered": [], "preset": []}
        for i in range(n + 10):
            for kind, style_id in (("registered", sid), ("preset", "preset")):
                t = time.perf_counter()
                r = c.post("/stylize", files=files(content), data={"style_id": style_id})
                if i >= 10:  # warm-up
                    times[kind].append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
        reg, pre = (statistics.median(times[k]) * 1000 for k in ("registered", "preset"))
        backend = c.get("/readyz").json()["store"]
    print(f"  {backend:>6}: /stylize p50 by registered id {reg:.2f} ms, by preset id {pre:.2f} ms: "
          f"the store adds {reg - pre:+.2f} ms (n={n} each, interleaved)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--http-n", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with run_redis(tmp / "redis") as redis:
            print("store calls, in process:")
            direct(SQLiteStyles(tmp / "s.sqlite3", 10 * args.n), args.n)
            direct(RedisStyles(redis.url, 10 * args.n), args.n)
            print("over HTTP (32x32 content):")
            http(tmp / "h1", args.http_n)
            http(tmp / "h2", args.http_n, ADAIN_REDIS_URL=redis.url)


if __name__ == "__main__":
    main()
