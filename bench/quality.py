"""Held-out quality of the inference-time options, side by side: AdaIN (the paper), EFDM (each
channel's whole distribution), EFDM from every style value instead of the kept table, and AdaIN run
a second time on its own output at a lower alpha. Prints tables; asserts nothing.

    make quality        # = .venv/bin/python bench/quality.py --sheet docs/matching/contact_sheet.jpg --time 512

Every (content, style) pair of bench/pairs/ (8 held-out photos x 8 held-out styles, none ever
trained on: scripts/eval_pairs.py) is rendered by each option through the product's pipeline
(``Stylizer.stylize``, the colour step at its default) at --size² centre crops, and an fp32 encoder
measures the result, lower is better for all three:

- style: the model card's normalised style distance (channel means and stds at relu1_1..relu4_1,
  scaled by weights/heldout_style_scales.safetensors);
- content: the card's content distance, relu4_1 against the AdaIN target (it favours AdaIN: its
  target is what AdaIN feeds the decoder);
- structure: relu4_1 of the result against the photo's, each channel normalised to mean 0 and
  std 1 first, so the style's statistics do not count and neither matching is favoured.

Then the per-style style distances, a contact sheet (photo, style, each option) and, with --time
N, seconds per image at N² for each option (style code kept, as for a registered style).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from perf import machine, timed  # noqa: E402
from model.adain import COLOR_MATCH, StyleCode, adain, mean_std  # noqa: E402
from model.efdm import efdm, even_ranks, quantiles  # noqa: E402
from model.images import to_image, to_tensor  # noqa: E402
from model.paths import WEIGHTS_DIR  # noqa: E402
from model.stylizer import Stylizer  # noqa: E402
from model.vgg import load_encoder  # noqa: E402
from training.data import list_images  # noqa: E402
from training.evaluate import eval_images  # noqa: E402
from training.losses import content_loss, load_style_scales, style_losses  # noqa: E402

PAIRS = REPO / "bench" / "pairs"
Render = Callable[[Stylizer, Image.Image, StyleCode, Image.Image], Image.Image]  # (st, photo, code, style image)


def code_of_every_value(st: Stylizer, style: Image.Image) -> StyleCode:
    """The style's code with a quantile table of all its values (no points dropped)."""
    code = st.encode_style(style, style_size=0)
    feat = st.encoder(st.net_input(to_tensor(style))).float()
    return dataclasses.replace(code, quantiles=quantiles(feat, even_ranks(feat[0, 0].numel())))


def options(color_match: float) -> dict[str, Render]:
    def run(matching: str, alpha: float = 1.0, colors: float = color_match) -> Render:
        return lambda st, c, code, _: st.stylize(c, [code], content_size=0, style_size=0, matching=matching,
                                                 alpha=alpha, color_match=colors)

    def pixels_matched(st: Stylizer, c: Image.Image, code: StyleCode, style: Image.Image) -> Image.Image:
        """EFDM at relu4_1, then each RGB channel given the style's sorted pixel values (histogram
        matching at the pixels' depth too, instead of the Gaussian colour step)."""
        out = to_tensor(run("efdm", colors=0)(st, c, code, style))
        return to_image(efdm(out, quantiles(to_tensor(style))))

    return {
        "adain": run("adain"),
        "efdm": run("efdm"),
        "efdm, every value": run("efdm"),  # given the full table by ``run_pairs``
        "adain twice (2nd at alpha 0.5)": lambda st, c, code, s: run("adain", 0.5)(st, run("adain")(st, c, code, s),
                                                                                   code, s),
        "efdm, full colour step": run("efdm", colors=1.0),
        "efdm + pixel histograms": pixels_matched,
    }


def held_out(kind: str, size: int, n: int = 100) -> dict[str, Image.Image]:
    """The first ``n`` pairs' images of one kind, centre crops of size² as the model card takes them."""
    names = [p.stem for p in list_images(PAIRS / kind)][:n]
    return dict(zip(names, (to_image(x) for x in eval_images(PAIRS / kind, n, size))))


def normalised(feat: torch.Tensor) -> torch.Tensor:
    mean, std = mean_std(feat)
    return (feat - mean) / std


@torch.inference_mode()
def measure(judge, scales, out: Image.Image, content: Image.Image, style: Image.Image) -> tuple[float, float, float]:
    """(style, content, structure) distances of one result."""
    o, c, s = (to_tensor(x) for x in (out, content, style))
    out_feats, style_feats, content_feat = judge.features(o), judge.features(s), judge(c)
    target = adain(content_feat, *mean_std(style_feats[-1]))
    style_d = float(sum(style_losses(out_feats, style_feats, scales)))
    return style_d, float(content_loss(out_feats[-1], target)), float(content_loss(normalised(out_feats[-1]),
                                                                                   normalised(content_feat)))


def sheet(rows: list[list[Image.Image]], names: list[str], path: Path, side: int = 160) -> None:
    """A grid: a row per pair, columns photo, style, then each option, with a header of names."""
    head = 18
    grid = Image.new("RGB", (side * len(rows[0]), head + side * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for j, name in enumerate(["photo", "style", *names]):
        draw.text((j * side + 4, 3), name, fill="black")
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            grid.paste(img.resize((side, side), Image.Resampling.LANCZOS), (j * side, head + i * side))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, quality=88)


def timing(st: Stylizer, renders: dict[str, Render], side: int, n: int = 5) -> None:
    content, style = next(iter(held_out("content", side, 1).values())), next(iter(held_out("style", 256, 1).values()))
    t = time.perf_counter()
    code = st.encode_style(style, style_size=0)
    print(f"\nseconds per image at {side}² (median of {n}; style code kept; the style's encoding, "
          f"with its quantile table: {time.perf_counter() - t:.3f} s)")
    for name, render in renders.items():
        if name != "efdm, every value":
            runs = timed(lambda: render(st, content, code, style), n, torch.device("cpu"))
            print(f"  {name:28} {statistics.median(runs):.3f} s")


def run_pairs(st: Stylizer, judge, scales, renders: dict[str, Render], contents: dict[str, Image.Image],
              styles: dict[str, Image.Image]) -> tuple[dict[str, list], list[list[Image.Image]]]:
    """Every pair through every option: per option (style name, style, content, structure) per
    pair, and the contact sheet's rows (a photo per style)."""
    results: dict[str, list] = {name: [] for name in renders}
    rows = []
    for i, (sname, style) in enumerate(styles.items()):
        code, full = st.encode_style(style, style_size=0), code_of_every_value(st, style)
        for k, content in enumerate(contents.values()):
            outs = []
            for name, render in renders.items():
                out = render(st, content, full if name == "efdm, every value" else code, style)
                results[name].append((sname, *measure(judge, scales, out, content, style)))
                outs.append(out)
            if k == i % len(contents):
                rows.append([content, style, *outs])
    return results, rows


def tables(results: dict[str, list], styles: list[str]) -> None:
    base = [statistics.fmean(r[i] for r in next(iter(results.values()))) for i in (1, 2, 3)]
    print(f"\n{'option':30} {'style':>8} {'content':>9} {'structure':>10}   (vs {next(iter(results))})")
    for name, rs in results.items():
        m = [statistics.fmean(r[i] for r in rs) for i in (1, 2, 3)]
        print(f"{name:30} {m[0]:8.4f} {m[1]:9.4f} {m[2]:10.4f}   "
              + " ".join(f"{100 * (a / b - 1):+6.1f} %" for a, b in zip(m, base)))
    print("\nstyle distance per style (mean over the photos)")
    print(f"{'style':16}" + "".join(f"{n[:14]:>16}" for n in results))  # names cut to the column
    for sname in styles:
        print(f"{sname:16}" + "".join(f"{statistics.fmean(r[1] for r in rs if r[0] == sname):16.4f}"
                                      for rs in results.values()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256, help="centre crops of this side")
    p.add_argument("--precision", default="fp32", help="the product's networks: fp32 (as the card), bf16, auto")
    p.add_argument("--sheet", type=Path, help="write the contact sheet here (JPEG)")
    p.add_argument("--time", type=int, default=0, help="also time each option at this side (0: no)")
    p.add_argument("--time-only", action="store_true", help="only the timing")
    p.add_argument("--color-match", type=float, default=COLOR_MATCH, help="the colour step (0: the paper's pipeline)")
    p.add_argument("--options", help="comma-separated names of the options to run (default: all)")
    args = p.parse_args()
    st = Stylizer.load(device="cpu", precision=args.precision)
    judge = load_encoder().eval()
    scales = load_style_scales(WEIGHTS_DIR / "heldout_style_scales.safetensors")
    contents, styles = held_out("content", args.size), held_out("style", args.size)
    print(f"{machine(torch.device('cpu'))}; networks {st.precision}; {len(contents)} x {len(styles)} held-out "
          f"pairs at {args.size}², colour step {args.color_match:g}")
    renders = options(args.color_match)
    if args.options:
        renders = {name: renders[name] for name in args.options.split(",")}
    if args.time_only:
        return timing(st, renders, args.time or 512)
    results, rows = run_pairs(st, judge, scales, renders, contents, styles)
    tables(results, list(styles))
    if args.sheet:
        sheet(rows, list(renders), args.sheet)
        print(f"\ncontact sheet: {args.sheet} ({len(rows)} pairs)")
    if args.time:
        timing(st, renders, args.time)


if __name__ == "__main__":
    main()
