"""Where a 512² render's time goes, layer by layer, on this CPU in fp32: each 3x3 convolution of
the encoder (to relu4_1) and the decoder timed by direct convolution (oneDNN) and by Winograd
(NNPACK), against its floor (its multiply-adds at this CPU's matmul peak); then what is not a
3x3 convolution (padding, ReLU, pooling, upsampling, the 1x1). Prints a table; asserts nothing.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python bench/layers.py [--size 512] [--n 5]

(the two variables hold a newer CPU to AVX2, as the slowest machines the service runs on)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from perf import peak_flops, timed  # noqa: E402
from model import convs  # noqa: E402
from model.images import pad_to_multiple  # noqa: E402
from model.stylizer import Stylizer  # noqa: E402


def inputs(net: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, convs.FastConv2d, torch.Tensor]], torch.Tensor]:
    """Every 3x3 convolution of ``net`` with the input it sees on ``x``, in order; and the output."""
    seen = []
    names = {m: n for n, m in net.named_modules()}
    handles = [m.register_forward_pre_hook(lambda m, a: seen.append((names[m], m, a[0].clone())))
               for m in net.modules() if isinstance(m, convs.FastConv2d)]
    with torch.inference_mode():
        out = net(x)
    for h in handles:
        h.remove()
    return seen, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--n", type=int, default=5)
    args = p.parse_args()
    cpu = torch.device("cpu")
    st = Stylizer.load(device="cpu", precision="fp32", conv="direct")
    for net in (st.encoder, st.decoder):
        convs.install(net, "direct")  # FastConv2d in direct mode: both ways callable per layer
    peak = peak_flops(torch.float32, cpu)
    x = st.net_input(pad_to_multiple(torch.rand(1, 3, args.size, args.size)))
    print(f"{args.size}² fp32, {torch.get_num_threads()} threads; matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{'layer':<14} {'input':>16} {'GFLOP':>6} {'floor':>7} {'direct':>8} {'winograd':>9} {'best/floor':>10}")
    totals = {"floor": 0.0, "direct": 0.0, "winograd": 0.0, "best": 0.0, "gflop": 0.0}
    whole = {}
    with torch.inference_mode():
        feat = None
        for part, net, given in (("encoder", st.encoder, x), ("decoder", st.decoder, None)):
            given = feat if given is None else given
            layers, out = inputs(net, given)
            for _, m, _ in layers:
                m.mode = "auto"  # each layer its faster way, measured on this input (as the service runs)
            whole[part] = statistics.median(timed(lambda: net(given), args.n, cpu))
            for name, m, inp in layers:
                h, w = inp.shape[-2] - 2, inp.shape[-1] - 2
                gflop = 2 * m.in_channels * m.out_channels * 9 * h * w / 1e9
                direct = statistics.median(timed(lambda: m._direct(inp), args.n, cpu))
                wino = statistics.median(timed(lambda: m._winograd(inp), args.n, cpu))
                floor = gflop * 1e9 / peak
                for k, v in (("floor", floor), ("direct", direct), ("winograd", wino), ("best", min(direct, wino)),
                             ("gflop", gflop)):
                    totals[k] += v
                shape = f"{m.in_channels}→{m.out_channels} {w}²" if w == h else f"{m.in_channels}→{m.out_channels} {w}x{h}"
                print(f"{part[:3]}.{name:<10} {shape:>16} {gflop:6.1f} {floor * 1e3:6.0f}ms {direct * 1e3:6.0f}ms "
                      f"{wino * 1e3:7.0f}ms {min(direct, wino) / floor:9.2f}x")
            feat = out
    convs_best = totals["best"]
    print(f"{'3x3 convs':<14} {'':>16} {totals['gflop']:6.0f} {totals['floor'] * 1e3:6.0f}ms "
          f"{totals['direct'] * 1e3:6.0f}ms {totals['winograd'] * 1e3:7.0f}ms {convs_best / totals['floor']:9.2f}x")
    network = whole["encoder"] + whole["decoder"]
    print(f"networks as the service runs them (each layer its best way): encoder {whole['encoder'] * 1e3:.0f} ms, "
          f"decoder {whole['decoder'] * 1e3:.0f} ms")
    print(f"   of which not the 3x3 convolutions' best: {(network - convs_best) * 1e3:.0f} ms "
          f"(padding, ReLU, pooling, upsampling, the 1x1, layout changes)")


if __name__ == "__main__":
    main()
