"""Performance benchmark: the reference algorithm vs our Stylizer, over HTTP, and against the
machine's compute floor. Prints tables; asserts nothing. Run it alone on the machine.

    make bench                                   # everything below, ~4 min on a 2-core CPU
    .venv/bin/python bench/perf.py [--sizes 256,512,1024] [--n 5] [--device auto] [--no-http] [--onnx fp32,int8]

1. Peak: the best rate of a large matmul per precision (the hardware's practical ceiling).
2. Per size: the reference port's test.py algorithm (bench/reference.py: fp32, contiguous, both
   images encoded every call) vs ``Stylizer.stylize`` per precision, with a cached style code and
   with a fresh style image; speed-up over the reference; conv FLOPs per image / peak = the floor,
   and our time as a multiple of it; PSNR of the low precision against fp32.
   Then batched passes at 512² (batch 1/2/4 on a CPU, 1/8/16/32 on a GPU): images/s.
3. HTTP: a real ``python -m service`` on 127.0.0.1 with the same weights: 512² content with a
   registered style, p50/p95 at concurrency 1 (vs the bare Stylizer), images/s at concurrency 4
   and 8, peak RSS; then a 2048² request at content_size=0 (tiled) and its peak RSS (larger ones:
   bench/large.py). The server takes ADAIN_* settings from the
   environment, e.g. ``ADAIN_BATCH_MAX=8 ADAIN_WORKERS=8`` for micro-batching on a GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e"), str(REPO / "bench")]

from common import image, png, psnr  # noqa: E402
from reference import Reference  # noqa: E402
from model import convs  # noqa: E402
from model.decoder import load_decoder, random_decoder, save_decoder  # noqa: E402
from model.paths import DECODER  # noqa: E402
from model.runtime import cpu_has_native_bf16, resolve_device  # noqa: E402
from model.plan import Options  # noqa: E402
from model.stylizer import Stylizer  # noqa: E402
from model.vgg import load_encoder  # noqa: E402


def timed(fn: Callable[[], object], n: int, device: torch.device) -> list[float]:
    """n timings of fn() after one warm-up call (seconds)."""
    fn()
    out = []
    for _ in range(n):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return out


def peak_flops(dtype: torch.dtype, device: torch.device, n: int = 4096) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / min(timed(lambda: a @ b, 5, device))


def conv_flops(module: nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """FLOPs of every convolution in one forward pass (2 per multiply-add), and the output.
    ReLU, padding, pooling and upsampling are memory-bound and a rounding error here."""
    total = 0.0

    def hook(m: nn.Conv2d, _inp: object, out: torch.Tensor) -> None:
        nonlocal total
        k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        total += 2.0 * out.numel() * k

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        out = module(x)
    for h in handles:
        h.remove()
    return total, out


CPU_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX"}


def machine(device: torch.device) -> str:
    """The machine every table is from: CPU model and the flags that decide its speed class."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    info = Path("/proc/cpuinfo").read_text()
    cpu = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
               platform.processor())
    present = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    flags = ", ".join(name for flag, name in CPU_FLAGS.items() if flag in present) or "none of AVX2/AVX-512/AMX"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if cap or os.environ.get("ATEN_CPU_CAPABILITY"):
        flags += (f"; used as {cap or 'all'} by oneDNN, {torch.backends.cpu.get_cpu_capability()} by ATen "
                  "(ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY)")
    jemalloc = "jemalloc" in os.environ.get("LD_PRELOAD", "")
    return (f"{cpu} [{flags}], {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
            f"threads, allocator {'jemalloc' if jemalloc else 'glibc'}")


def model_section(args: argparse.Namespace, decoder_path: Path, device: torch.device) -> dict[int, float]:
    """Returns the bare Stylizer's median seconds per size (low precision, cached style)."""
    low = "fp16" if device.type == "cuda" else "bf16"
    if device.type == "cpu" and not cpu_has_native_bf16():
        # emulated there (no AVX512-BF16 or AMX): >10x slower than fp32, and the service's auto skips it
        print("bf16 not timed: this CPU has no native bf16 (AVX512-BF16 or AMX); the service runs fp32")
        low = "fp32"
    precisions = list(dict.fromkeys(["fp32", low]))
    peaks = {p: peak_flops({"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[p], device)
             for p in precisions}
    print("peak (4096² matmul): " + ", ".join(f"{p} {v / 1e9:,.0f} GFLOP/s" for p, v in peaks.items()))

    encoder, decoder = load_encoder(), load_decoder(decoder_path)  # fp32 copies for counting FLOPs
    reference = Reference(load_encoder().as_reference(), load_decoder(decoder_path), device)
    stylizers = {p: Stylizer.load(decoder_path, device=str(device), precision=p) for p in precisions}
    if device.type == "cpu" and convs.winograd_available():  # the A/B: fp32 convs as measured vs all direct
        stylizers["fp32-direct"] = Stylizer.load(decoder_path, device="cpu", precision="fp32", conv="direct")
    for prec in args.onnx:  # ONNX Runtime rows (no floor: its int8 has no matching matmul peak here)
        stylizers[f"ort-{prec}"] = Stylizer.load(decoder_path, precision=prec, backend="onnxruntime",
                                                 onnx_dir=args.onnx_dir)
    bare: dict[int, float] = {}
    head = (f"{'size':>5} {'GFLOP':>6} {'reference':>10} {'ours':>8} {'style':>6} {'median':>9} "
            f"{'speed-up':>9} {'floor':>9} {'x floor':>8} {'PSNR vs fp32':>13}")
    print("\n" + head + "\n" + "-" * len(head))
    for size in args.sizes:
        content, style = image(size, 1), image(size, 2)
        x = torch.rand(1, 3, size, size)
        enc_flops, feat = conv_flops(encoder, x)
        dec_flops, _ = conv_flops(decoder, feat)
        n = args.n if size <= 512 else max(2, args.n // 2)
        ref_times = timed(lambda: reference(content, style, size), n, device)
        ref = statistics.median(ref_times)
        ref_out = reference(content, style, size)
        print(f"{size:>5} {(2 * enc_flops + dec_flops) / 1e9:6.0f} {ref:9.3f}s {'ref':>8} {'fresh':>6} "
              f"{ref:8.3f}s {1.0:8.2f}x {(2 * enc_flops + dec_flops) / peaks['fp32']:8.3f}s "
              f"{ref / ((2 * enc_flops + dec_flops) / peaks['fp32']):7.1f}x {'':>13}")
        outs = {}
        for prec, st in stylizers.items():
            code = st.encode_style(style, size)
            for kind, styles, flops in (("cached", [code], enc_flops + dec_flops),
                                        ("fresh", [style], 2 * enc_flops + dec_flops)):
                run = lambda: st.stylize(content, styles, content_size=0, style_size=0)  # noqa: E731
                t = statistics.median(timed(run, n, device))
                if kind == "cached":
                    outs[prec] = run()
                    if prec == low:
                        bare[size] = t
                floor = flops / peaks[prec.split("-")[0]] if prec.split("-")[0] in peaks else None
                # against the reference: the paper's pipeline (no colour step), which is what it computes
                paper = st.stylize(content, styles, content_size=0, style_size=0, color_match=0)
                quality = (f"{psnr(outs[prec], outs['fp32']):10.1f} dB" if prec != "fp32" and kind == "cached"
                           else f"ref {psnr(paper, ref_out):6.1f} dB" if kind == "cached" else "")
                floors = f"{floor:8.3f}s {t / floor:7.1f}x" if floor else f"{'':>9} {'':>8}"
                print(f"{'':>5} {flops / 1e9:6.0f} {'':>10} {prec:>8} {kind:>6} {t:8.3f}s {ref / t:8.2f}x "
                      f"{floors} {quality:>13}")
    print(f"fp32 3x3 convolutions as measured here (layer, size pairs): {stylizers['fp32'].convolutions or 'direct'}")
    batch_section(args, stylizers[low], device)
    return bare


def batch_section(args: argparse.Namespace, st: Stylizer, device: torch.device, size: int = 512) -> None:
    """Images/s of one batched network pass (what the service's micro-batching runs)."""
    code = st.encode_style(image(size, 2), size)
    sizes = (1, 8, 16, 32) if device.type == "cuda" else (1, 2, 4)
    print(f"\nbatched passes, {size}² {st.precision}, cached style (Stylizer.render):")
    for b in sizes:
        plans = [st.prepare(image(size, 10 + i), [code], Options(content_size=0)) for i in range(b)]
        t = statistics.median(timed(lambda: st.render(plans), max(2, args.n // 2), device))
        print(f"  batch {b:>3}: {t * 1000:8.1f} ms per pass, {b / t:8.1f} images/s")


def http_section(args: argparse.Namespace, decoder_path: Path, bare: dict[int, float], tmp: Path) -> None:
    from serverproc import rss_mb, run_server

    size = 512
    env = {"ADAIN_DECODER": str(decoder_path), "ADAIN_PRESETS_DIR": str(tmp / "none"),
           "ADAIN_DEFAULT_STYLE_SIZE": str(size), "ADAIN_DEVICE": args.device}
    body, style = png(image(size, 1)), png(image(size, 2))
    with run_server(tmp, **env) as server, server.client() as c:
        sid = c.post("/styles", files={"style": ("s.png", style, "image/png")}).json()["id"]

        def one(client=c, data: bytes = body, fields: dict | None = None) -> tuple[int, float]:
            t = time.perf_counter()
            r = client.post("/stylize", files={"content": ("c.png", data, "image/png")},
                            data=fields or {"style_id": sid, "content_size": str(size)})
            return r.status_code, time.perf_counter() - t

        one()
        lat = sorted(t for _, t in (one() for _ in range(args.http_n)))
        p50, p95 = statistics.median(lat), lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        print(f"\nHTTP POST /stylize, {size}² PNG content, registered style, {server.url}")
        print(f"concurrency 1: p50 {p50:.3f} s, p95 {p95:.3f} s (n={len(lat)}); bare Stylizer {bare.get(size, float('nan')):.3f} s "
              f"-> HTTP/bare {p50 / bare.get(size, float('nan')):.2f}x")
        for conc in (4, 8):
            per = max(2, args.http_n * 2 // conc)

            def worker(_: int) -> list[tuple[int, float]]:
                with server.client() as cc:
                    return [one(cc) for _ in range(per)]

            t = time.perf_counter()
            with ThreadPoolExecutor(conc) as pool:
                results = [r for rs in pool.map(worker, range(conc)) for r in rs]
            wall = time.perf_counter() - t
            codes = Counter(code for code, _ in results)
            lats = sorted(t for code, t in results if code == 200)
            print(f"concurrency {conc}: {codes[200] / wall:.2f} images/s ({len(results)} requests in {wall:.1f} s, "
                  f"statuses {dict(codes)}, p50 {statistics.median(lats):.3f} s)")
        now, peak = rss_mb(server.proc.pid)
        print(f"server RSS after the load: {now:.0f} MB, peak {peak:.0f} MB")

        big = png(image(2048, 3))
        code, t = one(data=big, fields={"style_id": sid, "content_size": "0"})
        now, peak = rss_mb(server.proc.pid)
        print(f"2048² at content_size=0 (tiled): {code} in {t:.2f} s; RSS {now:.0f} MB, peak {peak:.0f} MB "
              "(larger sizes: bench/large.py)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[256, 512, 1024])
    p.add_argument("--n", type=int, default=5, help="timed runs per cell (half at sizes over 512)")
    p.add_argument("--http-n", type=int, default=20, help="requests at concurrency 1 (2x that per level under load)")
    p.add_argument("--device", default="auto")
    p.add_argument("--decoder", type=Path, default=DECODER)
    p.add_argument("--no-http", action="store_true")
    p.add_argument("--onnx", type=lambda v: [x for x in v.split(",") if x], default=[],
                   help="also time the onnxruntime backend in these precisions, e.g. fp32,int8 (bench/backends.py: per network)")
    p.add_argument("--onnx-dir", type=Path, default=None, help="the onnxruntime backend's graphs (default: its cache)")
    args = p.parse_args()
    device = resolve_device(args.device)
    args.device = str(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    tmp = Path(tempfile.mkdtemp())
    decoder = args.decoder if args.decoder.is_file() else save_decoder(random_decoder(0), tmp, "safetensors")
    print(machine(device))
    bare = model_section(args, decoder, device)
    if not args.no_http:
        http_section(args, decoder, bare, tmp)


if __name__ == "__main__":
    main()
