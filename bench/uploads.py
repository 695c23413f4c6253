"""Peak memory of a real server under many maximum-size uploads at once. Prints a table; asserts
nothing. Run it alone on the machine.

    .venv/bin/python bench/uploads.py [--clients 16] [--mb 40]

Each client POSTs /stylize with a content and a style of --mb/2 MB each (a small PNG padded with
bytes after its end, so it decodes and renders in a moment): the bodies are what is measured.
The server runs once with the default ADAIN_MAX_BUFFERED_BYTES and once with no aggregate bound
(as before the bound existed); the table has each run's answers and the server's peak RSS.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "e2e")]
from helpers import noise_image, png  # noqa: E402
from serverproc import run_server  # noqa: E402

MB = 1024 * 1024


def padded(seed: int, size: int) -> bytes:
    data = png(noise_image(96, 64, seed=seed))
    return data + b"\0" * (size - len(data))  # after IEND: ignored by the decoder, carried by the body


def run(clients: int, mb: int, env: dict[str, str]) -> tuple[Counter, float, float]:
    body = [("content", ("c.png", padded(1, mb * MB // 2), "image/png")),
            ("style", ("s.png", padded(2, mb * MB // 2), "image/png"))]
    with tempfile.TemporaryDirectory() as d, run_server(Path(d), ADAIN_WARMUP="0", ADAIN_DEFAULT_CONTENT_SIZE="0",
                                                         ADAIN_DEFAULT_STYLE_SIZE="64", **env) as server:
        idle = server.rss_mb()[0]

        def post(_: int) -> int:
            with httpx.Client(base_url=server.url, timeout=600) as c:
                return c.post("/stylize", files=body).status_code

        with ThreadPoolExecutor(clients) as pool:
            answers = Counter(pool.map(post, range(clients)))
        return answers, idle, server.rss_mb()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--mb", type=int, default=40, help="body size per request (the limit is 50)")
    args = p.parse_args()
    print(f"\n{args.clients} clients at once, {args.mb} MB bodies each ({args.clients * args.mb} MB offered)\n")
    print("| ADAIN_MAX_BUFFERED_BYTES | answers | RSS idle MB | peak RSS MB |")
    print("|---|---|---:|---:|")
    for label, env in (("256 MB (default)", {}), ("no aggregate bound", {"ADAIN_MAX_BUFFERED_BYTES": str(1 << 40)})):
        answers, idle, peak = run(args.clients, args.mb, env)
        print(f"| {label} | {dict(sorted(answers.items()))} | {idle:.0f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
