"""PyTorch fp32 / bf16 against ONNX Runtime fp32 / int8: speed end to end and per network at 512²,
PSNR against PyTorch fp32, and the model card's held-out objective of each. Prints tables; asserts
nothing. Run it alone on the machine.

    .venv/bin/python bench/backends.py [--size 512] [--n 7] [--pairs 16] [--data data] [--onnx-dir DIR]

Held-out objective: the card's (weights/MODEL_CARD.md, "Held-out quality"): every pair of the first
``--pairs`` held-out contents × styles (DATA/val, `make corpus`) at 256² centre crops, content +
10 × the normalised style term, measured with the fp32 PyTorch encoder on each backend's decoder
output (so only the networks that made the image differ).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from common import image, psnr  # noqa: E402
from reference import Reference  # noqa: E402
from model.adain import adain, mean_std  # noqa: E402
from model.decoder import load_decoder  # noqa: E402
from model.paths import DECODER  # noqa: E402
from model.runtime import cpu_has_native_bf16  # noqa: E402
from model.stylizer import Stylizer  # noqa: E402
from model.vgg import load_encoder  # noqa: E402
from training.evaluate import eval_images  # noqa: E402
from training.losses import content_loss, load_style_scales, style_losses  # noqa: E402

SCALES = REPO / "weights" / "heldout_style_scales.safetensors"


def median_time(fn: Callable[[], object], n: int) -> float:
    fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


@torch.inference_mode()
def heldout_objective(st: Stylizer, judge: torch.nn.Module, contents: torch.Tensor, styles: torch.Tensor,
                      scales: list[torch.Tensor]) -> tuple[float, float]:
    """(content, normalised style) over every pair: ``st``'s networks make the image, ``judge``
    (fp32 PyTorch) measures it against the fp32 AdaIN target."""
    lc, ls, n = 0.0, 0.0, 0
    for s in styles:
        s = s[None]
        style_feats = judge.features(s)
        mean, std = mean_std(style_feats[-1])
        st_mean, st_std = mean_std(st.encoder(st.net_input(s)).float())
        for i in range(0, len(contents), 8):
            c = contents[i:i + 8]
            target = adain(judge(c), mean, std)
            out = st.decoder(st.net_input(adain(st.encoder(st.net_input(c)).float(), st_mean, st_std))).float()
            out_feats = judge.features(out)
            lc += content_loss(out_feats[-1], target).item() * len(c)
            batch = [f.expand(len(c), -1, -1, -1) for f in style_feats]
            ls += float(sum(x.float() for x in style_losses(out_feats, batch, scales))) * len(c)
            n += len(c)
    return lc / n, ls / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--n", type=int, default=7, help="timed runs per cell")
    p.add_argument("--pairs", type=int, default=16, help="held-out contents and styles (pairs = this²); 0 = skip")
    p.add_argument("--data", type=Path, default=REPO / "data")
    p.add_argument("--decoder", type=Path, default=DECODER)
    p.add_argument("--onnx-dir", type=Path, default=None)
    args = p.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ", end="")
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}")
    rows = [("torch", "fp32")] + ([("torch", "bf16")] if cpu_has_native_bf16() else []) + \
        [("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    stylizers = {f"{b} {q}": Stylizer.load(args.decoder, precision=q, backend=b, onnx_dir=args.onnx_dir)
                 for b, q in rows}
    size = args.size
    content, style = image(size, 1), image(size, 2)
    reference = Reference(load_encoder().as_reference(), load_decoder(args.decoder), torch.device("cpu"))
    ref = median_time(lambda: reference(content, style, size), args.n)
    x = torch.rand(1, 3, size, size)
    base = stylizers["torch fp32"]
    with torch.inference_mode():
        feat = base.encoder(x)
    fp32_out = base.stylize(content, [base.encode_style(style, size)], content_size=0)

    head = (f"{'backend':>18} {'end to end':>11} {'vs reference':>13} {'encoder':>9} {'decoder':>9} "
            f"{'PSNR vs torch fp32':>19}")
    print(f"\n{size}² content, cached style code, median of {args.n}; reference (bench/reference.py, fp32, "
          f"both images encoded): {ref:.3f} s\n{head}\n{'-' * len(head)}")
    for name, st in stylizers.items():
        code = st.encode_style(style, size)
        e2e = median_time(lambda: st.stylize(content, [code], content_size=0), args.n)
        with torch.inference_mode():
            xi, fi = st.net_input(x), st.net_input(feat)
            enc = median_time(lambda: st.encoder(xi), args.n)
            dec = median_time(lambda: st.decoder(fi), args.n)
        quality = "" if name == "torch fp32" else f"{psnr(st.stylize(content, [code], content_size=0), fp32_out):.1f} dB"
        print(f"{name:>18} {e2e:10.3f}s {ref / e2e:12.2f}x {enc:8.3f}s {dec:8.3f}s {quality:>19}")

    if not args.pairs:
        return
    val = args.data / "val"
    if not (val / "content").is_dir():
        print(f"\nheld-out objective skipped: no {val}/content (make corpus)")
        return
    contents = eval_images(val / "content", args.pairs, 256)
    styles = eval_images(val / "style", args.pairs, 256)
    judge, scales = load_encoder().eval(), load_style_scales(SCALES)
    print(f"\nheld-out objective, {len(contents) * len(styles)} pairs at 256² (content + 10 × style, lower is better)")
    results = {}
    for name, st in stylizers.items():
        c, s = heldout_objective(st, judge, contents, styles, scales)
        results[name] = c + 10 * s
        delta = f"{100 * (results[name] / results['torch fp32'] - 1):+.2f} % vs torch fp32" if results else ""
        print(f"{name:>18}: content {c:.4f}, style {s:.4f}, objective {results[name]:.4f}  {delta}")


if __name__ == "__main__":
    main()
