"""Live streams: frames/s and latency per stream over GET /ws/stylize. Prints a table; asserts
nothing. Run it alone on the machine.

    .venv/bin/python bench/live.py [--seconds 8] [--sizes 256,384] [--streams 1,2,4] [--no-stabilize]

A fresh ``python -m service`` with the shipped weights and default settings; each stream is a
websockets client that sends a 640x480 camera-like frame (JPEG, a pan) and waits for its answer
before the next, so frames/s is what a client gets and latency is send to answer.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests")]
import clips  # noqa: E402
from serverproc import run_server  # noqa: E402


def jpeg(frame) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def stream(url: str, settings: dict, frames: list[bytes], seconds: float, out: list) -> None:
    latencies, done = [], 0
    with connect(url, max_size=2 ** 24) as ws:
        ws.send(json.dumps(settings))
        while json.loads(ws.recv())["type"] != "ready":
            pass
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            sent = time.perf_counter()
            ws.send(frames[done % len(frames)])
            while not isinstance(ws.recv(), bytes):
                pass
            latencies.append(time.perf_counter() - sent)
            done += 1
        out.append((done / (time.perf_counter() - start), statistics.median(latencies)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--sizes", default="256,384")
    p.add_argument("--streams", default="1,2,4")
    p.add_argument("--no-stabilize", action="store_true")
    args = p.parse_args()
    frames = [jpeg(f) for f in clips.pan(640, 480, 48)]
    with tempfile.TemporaryDirectory() as d, run_server(Path(d), ADAIN_QUEUE_DEPTH="8") as server:
        url = server.url.replace("http://", "ws://") + "/ws/stylize"
        print(f"\nlive streams, 640x480 JPEG frames in, {args.seconds:g} s each, stabilize "
              f"{not args.no_stabilize}\n")
        print("| size | streams | frames/s per stream | total frames/s | latency p50 (ms) |")
        print("|---|---:|---:|---:|---:|")
        for size in (int(x) for x in args.sizes.split(",")):
            settings = {"style_id": "swamp", "content_size": size, "stabilize": not args.no_stabilize}
            for n in (int(x) for x in args.streams.split(",")):
                results: list = []
                threads = [threading.Thread(target=stream, args=(url, settings, frames, args.seconds, results))
                           for _ in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                fps = [r[0] for r in results]
                lat = statistics.median(r[1] for r in results) * 1000
                print(f"| {size} | {n} | {statistics.mean(fps):.1f} | {sum(fps):.1f} | {lat:.0f} |")


if __name__ == "__main__":
    main()
