"""Tenants sharing one server (real uvicorn, the shipped weights): does a greedy tenant slow a
polite one, and does an abandoned large render hold the model?

    .venv/bin/python bench/tenants.py [--requests 15] [--size 256]

1. Fair turns: the polite tenant sends requests one at a time, alone, then while a greedy tenant
   keeps 8 in flight (ADAIN_TENANT_QUEUE_DEPTH=8, so all 8 wait in the queue): the polite p50
   under the flood / alone (target <= 2x; first come, first served gave 8.6-9.3x), and the
   model's pieces meanwhile (the queue's debug log): waits and run times per tenant, in order.
2. Rate limit: the same flood with the greedy tenant limited to 4 requests a second (its
   rate_limit in the keys file): its share of 429s, and the polite p50.
3. Abandoned render: a 2048² request whose client hangs up after 2 s, then a small request at
   once: seconds until it is answered, against a 1024² request (about one tile's work) and the
   small request alone.
Numbers only (no pass/fail); say which CPU they come from (printed)."""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e"), str(REPO / "tests"), str(REPO / "bench")]

from common import image, png  # noqa: E402
from serverproc import Server, run_server  # noqa: E402
from service.tenants import digest  # noqa: E402

KEYS = {"greedy": "greedy-key", "polite": "polite-key"}


def cpu_kind() -> str:
    flags = Path("/proc/cpuinfo").read_text()
    kind = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else \
        "AVX2 only" if "avx2" in flags else "other"
    name = re.search(r"model name\s*:\s*(.*)", flags)
    return f"{name.group(1) if name else '?'} ({kind})"


def stylize(c: httpx.Client, who: str, content: bytes, style_id: str, **data) -> httpx.Response:
    return c.post("/stylize", files={"content": ("c.png", content, "image/png")},
                  data={"style_id": style_id, **data}, headers={"X-API-Key": KEYS[who]})


def polite_p50(server: Server, style: dict[str, str], body: bytes, n: int, greedy: int = 0) -> tuple[float, dict]:
    """The polite tenant's p50 over ``n`` requests while ``greedy`` greedy clients flood."""
    stop, statuses, lock = threading.Event(), {}, threading.Lock()

    def flood() -> None:
        with server.client(timeout=120) as c:
            while not stop.is_set():
                r = stylize(c, "greedy", body, style["greedy"])
                with lock:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 429:
                    time.sleep(float(r.headers.get("retry-after", "1")))

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(greedy)]
    for t in threads:
        t.start()
    times = []
    with server.client(timeout=120) as c:
        if greedy:
            time.sleep(3)  # the flood fills the queue first
        for _ in range(n):
            t0 = time.perf_counter()
            r = stylize(c, "polite", body, style["polite"])
            assert r.status_code == 200, r.text
            times.append(time.perf_counter() - t0)
    stop.set()
    for t in threads:
        t.join(120)
    return statistics.median(times), statuses


def register(server: Server, size: int) -> dict[str, str]:
    ids = {}
    with server.client() as c:
        for who in KEYS:
            r = c.post("/styles", files={"style": ("s.png", png(image(size, 2)), "image/png")},
                       headers={"X-API-Key": KEYS[who]})
            ids[who] = r.json()["id"]
    return ids


def keys_file(tmp: Path, greedy_rate: str = "") -> str:
    path = tmp / f"keys{len(greedy_rate)}.toml"
    rate = {"greedy": greedy_rate, "polite": ""}
    path.write_text("".join(f'[[tenant]]\nname = "{who}"\nkeys = ["{digest(key)}"]\nrate_limit = "{rate[who]}"\n\n'
                            for who, key in KEYS.items()))
    return str(path)


PIECE = re.compile(r"piece tenant=(\w+) waited=([\d.]+) ran=([\d.]+)")


def timeline(log: str) -> None:
    """The model's pieces while the greedy tenant floods (the queue's debug lines): what each
    tenant waited for the slot and ran, and the first pieces in order."""
    pieces = [(m[1], float(m[2]), float(m[3])) for m in PIECE.finditer(log)]
    for who in KEYS:
        mine = [p for p in pieces if p[0] == who]
        if mine:
            print(f"   {who}: {len(mine)} pieces, waited p50 {statistics.median(p[1] for p in mine):.3f} s "
                  f"(max {max(p[1] for p in mine):.3f}), ran p50 {statistics.median(p[2] for p in mine):.3f} s")
    print("   in order: " + " | ".join(f"{w[0]} {r:.2f}" + (f" (waited {q:.2f})" if w == "polite" else "")
                                       for w, q, r in pieces[:14]))


def fairness(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    body = png(image(args.size, 1))
    with run_server(tmp / "fair", "debug", **env, ADAIN_KEYS_FILE=keys_file(tmp), ADAIN_TENANT_QUEUE_DEPTH="8",
                    ADAIN_QUEUE_DEPTH="16") as server:
        style = register(server, args.size)
        alone, _ = polite_p50(server, style, body, args.requests)
        start = server.log.stat().st_size
        flooded, statuses = polite_p50(server, style, body, args.requests, greedy=8)
        with open(server.log, encoding="utf-8", errors="replace") as f:
            f.seek(start)
            flood_log = f.read()
    print(f"1. fair turns, {args.size}²: polite p50 alone {alone:.3f} s, under a greedy tenant's 8 in flight "
          f"{flooded:.3f} s: {flooded / alone:.2f}x (target <= 2x); greedy answers {statuses}")
    timeline(flood_log)
    with run_server(tmp / "rate", **env, ADAIN_KEYS_FILE=keys_file(tmp, "4/second"), ADAIN_TENANT_QUEUE_DEPTH="8",
                    ADAIN_QUEUE_DEPTH="16") as server:
        style = register(server, args.size)
        flooded, statuses = polite_p50(server, style, body, args.requests, greedy=8)
    total = sum(statuses.values())
    print(f"2. the greedy tenant limited to 4/second: greedy answers {statuses} "
          f"({statuses.get(429, 0) / max(1, total):.0%} 429); "
          f"polite p50 {flooded:.3f} s ({flooded / alone:.2f}x alone)")


def abandoned(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    small, tile, big = png(image(args.size, 3)), png(image(1024, 4)), png(image(2048, 5))
    with run_server(tmp / "abandon", **env, ADAIN_KEYS_FILE=keys_file(tmp)) as server:
        style = register(server, args.size)
        with server.client(timeout=300) as c:
            stylize(c, "polite", small, style["polite"])  # warm

            def timed(body: bytes, **data) -> float:
                t0 = time.perf_counter()
                assert stylize(c, "polite", body, style["polite"], **data).status_code == 200
                return time.perf_counter() - t0

            alone, one_tile = timed(small), timed(tile, content_size="0")
        with server.client(timeout=2) as gone:
            t0 = time.perf_counter()
            try:
                stylize(gone, "greedy", big, style["greedy"], content_size="0")
            except httpx.TimeoutException:
                pass  # the client hangs up after 2 s, as a user closing the page
        with server.client(timeout=300) as c:
            after = timed(small)
        print(f"3. abandoned 2048² after {time.perf_counter() - t0 - after:.1f} s: the next {args.size}² request "
              f"answered in {after:.2f} s (alone {alone:.2f} s; a 1024² request, about one tile, {one_tile:.2f} s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=15, help="polite requests per measurement")
    p.add_argument("--size", type=int, default=256, help="content and style side in px")
    p.add_argument("--precision", default="auto", help="the server's ADAIN_PRECISION (fp32: longer pieces)")
    args = p.parse_args()
    print(f"CPU: {cpu_kind()}, precision {args.precision}")
    env = {"ADAIN_DEFAULT_CONTENT_SIZE": "0", "ADAIN_PRECISION": args.precision,
           "ADAIN_DEFAULT_STYLE_SIZE": str(args.size), "ADAIN_WORKERS": "1"}
    with tempfile.TemporaryDirectory() as d:
        fairness(args, env, Path(d))
        abandoned(args, env, Path(d))


if __name__ == "__main__":
    main()
