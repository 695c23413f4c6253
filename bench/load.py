"""Overload test: a flood from this process against a real server, bounded in time and count.

    make load                                    # 60 s at concurrency 32, 512² content, own server
    .venv/bin/python bench/load.py [--seconds 60] [--concurrency 32] [--size 512] [--rss-bound-mb 2048]

By default clients never back off (a flood): each sends its next request as soon as the last one
is answered; --honour-retry-after makes them wait as a 503 or 429 tells them (the flood is one
tenant, so past its share of the queue, ADAIN_TENANT_QUEUE_DEPTH, it gets 429 before the queue is
full). On a small machine the flood's own CPU use (it runs here too) takes cores from the model:
the report prints it. Pass criteria, printed with the numbers (exit status 1 if any fails): only
200, 429 and 503 answers, every refusal with Retry-After, the server's peak RSS under --rss-bound-mb, the
queue drained within 10 s of the end, and a normal request served afterwards. Reports images/s,
p50/p95/p99 latency of accepted requests, and how fast refusals come back.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e"), str(REPO / "bench")]

from common import image, png  # noqa: E402
from serverproc import Server, run_server  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


def flood(server: Server, args: argparse.Namespace) -> bool:
    body = png(image(args.size, 1))
    with server.client() as c:
        sid = c.post("/styles", files={"style": ("s.png", png(image(args.size, 2)), "image/png")}).json()["id"]
    lock = threading.Lock()
    statuses: Counter[int] = Counter()
    accepted: list[float] = []
    refused: list[float] = []
    missing_retry_after = 0
    stop = time.perf_counter() + args.seconds

    def client() -> None:
        nonlocal missing_retry_after
        with httpx.Client(base_url=server.url, timeout=120) as c:
            for _ in range(args.max_requests):
                if time.perf_counter() > stop:
                    return
                t = time.perf_counter()
                try:
                    r = c.post("/stylize", files={"content": ("c.png", body, "image/png")}, data={"style_id": sid})
                    status = r.status_code
                except httpx.HTTPError:
                    status = -1  # connection error: counted as a failure
                took = time.perf_counter() - t
                with lock:
                    statuses[status] += 1
                    (accepted if status == 200 else refused).append(took)
                    if status in (429, 503) and not r.headers.get("retry-after", "").isdigit():
                        missing_retry_after += 1
                if status in (429, 503) and args.honour_retry_after:
                    time.sleep(min(float(r.headers.get("retry-after", "1")), max(0.0, stop - time.perf_counter())))

    rss_before = server.rss_mb()[0]
    cpu = time.process_time()
    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    _, peak = server.rss_mb()
    t = time.perf_counter()
    while server.metric("adain_queue_depth") + server.metric("adain_in_flight") > 0 and time.perf_counter() - t < 10:
        time.sleep(0.05)
    drain = time.perf_counter() - t
    with server.client() as c:
        after = c.post("/stylize", files={"content": ("c.png", body, "image/png")}, data={"style_id": sid}).status_code

    total = sum(statuses.values())
    print(f"{args.concurrency} clients ({'honouring Retry-After' if args.honour_retry_after else 'no back-off'}) "
          f"for {wall:.1f} s, {args.size}² PNG content, registered style: {total} requests, "
          f"statuses {dict(sorted(statuses.items()))}; the clients used {cpu / wall:.2f} CPU cores themselves")
    print(f"accepted: {statuses[200] / wall:.2f} images/s; latency p50 {percentile(accepted, 0.5):.2f} s, "
          f"p95 {percentile(accepted, 0.95):.2f} s, p99 {percentile(accepted, 0.99):.2f} s")
    if refused:
        print(f"refused (429/503: {statuses[429]}/{statuses[503]}): median answer in "
              f"{statistics.median(refused) * 1000:.1f} ms, "
              f"{missing_retry_after} without Retry-After")
    print(f"server RSS {rss_before:.0f} MB before, peak {peak:.0f} MB (bound {args.rss_bound_mb} MB); "
          f"queue drained {drain:.2f} s after the end; next request: {after}")
    checks = {
        "only 200, 429 and 503": set(statuses) <= {200, 429, 503},
        "every refusal has Retry-After": missing_retry_after == 0,
        "peak RSS under the bound": peak < args.rss_bound_mb,
        "queue drained": drain < 10,
        "serving afterwards": after == 200,
    }
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return all(checks.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-requests", type=int, default=10_000, help="per client, a bound besides the time")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--honour-retry-after", action="store_true", help="polite clients: wait as told after a 503 or 429")
    p.add_argument("--rss-bound-mb", type=int, default=2048)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    with run_server(tmp, ADAIN_PRESETS_DIR=str(tmp / "none"), ADAIN_DEFAULT_STYLE_SIZE=str(args.size)) as server:
        print(f"server {server.url} (defaults: 1 worker, queue 8, timeout 60 s)")
        ok = flood(server, args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
