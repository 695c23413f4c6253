"""Measure candidate decoders on the held-out split and draw the model card's figures.

    .venv/bin/python scripts/model_card_assets.py --data data --runs runs/cpu2/eval.jsonl \
        --candidates runs/a.safetensors runs/b.safetensors --out weights/

Prints held-out content/style losses (every pair of --pairs contents x --pairs styles at --size,
the training objective's terms) per candidate; writes OUT/heldout_losses.png (losses over training
from eval.jsonl files), OUT/samples.jpg (held-out pairs through the Stylizer, with the first
candidate) and, given two or more candidates or --compare-color-matches, OUT/compare.jpg
(--compare pairs at full resolution, one row per candidate and colour step). --color-match
measures and draws the product's output (the decoder, then the colour step). On the CPU it
re-executes itself under jemalloc, as the trainer does (2-4x faster).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.adain import adain, mean_std  # noqa: E402
from model.decoder import load_decoder  # noqa: E402
from model.images import open_image  # noqa: E402
from model.runtime import reexec_with_jemalloc, resolve_precision  # noqa: E402
from model.stylizer import Stylizer  # noqa: E402
from training.losses import load_style_scales  # noqa: E402
from training.evaluate import eval_images, evaluate  # noqa: E402
from model.vgg import load_encoder  # noqa: E402


def plot(series: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    """A small line chart with PIL (no plotting dependency): one line per series, log-free axes."""
    w, h, m = 720, 360, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    pts = [p for s in series.values() for p in s]
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = 0.0, max(p[1] for p in pts) * 1.05
    sx = lambda x: m + (x - x0) / max(1, x1 - x0) * (w - 2 * m)  # noqa: E731
    sy = lambda y: h - m - (y - y0) / (y1 - y0) * (h - 2 * m)  # noqa: E731
    d.rectangle((m, m, w - m, h - m), outline="black")
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        d.text((4, sy(yv) - 6), f"{yv:.1f}", fill="black")
    d.text((m, h - m + 8), str(x0), fill="black")
    d.text((w - m - 40, h - m + 8), f"{x1} steps", fill="black")
    d.text((m, 18), title, fill="black")
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    for i, (name, s) in enumerate(series.items()):  # cycle: zip dropped series past the palette
        c = colours[i % len(colours)]
        d.line([(sx(x), sy(y)) for x, y in s], fill=c, width=2)
        d.text((w - m - 200, m + 8 + 14 * i), name, fill=c)
    img.save(path)


MIRRORS = {"v": lambda x: x.flip(2), "h": lambda x: x.flip(3), "t": lambda x: x.transpose(2, 3)}


def mirror_gaps(encoder, decoder, contents: torch.Tensor, styles: torch.Tensor,
                amp: torch.dtype | None = torch.bfloat16) -> dict[str, float]:
    """The whole pipeline's direction bias (the trainer's ``flipgap`` sees the decoder alone): for
    each pair, stylise the content and style turned upside down (v), mirrored left-right (h) or
    transposed (t), undo the turn, and take the RMS difference from the plain result, in 8-bit levels.
    ``amp``: the autocast dtype, None for fp32."""
    def stylise(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            return decoder(adain(encoder(c), *mean_std(encoder(s)))).float().clamp(0, 1)

    sums = dict.fromkeys(MIRRORS, 0.0)
    for c in contents:
        c = c[None].expand(len(styles), -1, -1, -1)
        plain = stylise(c, styles)
        for k, m in MIRRORS.items():
            sums[k] += (m(stylise(m(c), m(styles))) - plain).pow(2).mean().item()
    return {f"mirror_{k}": 255 * (v / len(contents)) ** 0.5 for k, v in sums.items()}


@torch.no_grad()  # a decorator, not set_grad_enabled(False): callers (the tests) get their grad mode back
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--runs", type=Path, nargs="*", default=[], help="eval.jsonl files to plot")
    p.add_argument("--candidates", type=Path, nargs="+", required=True, help="decoder files to measure")
    p.add_argument("--pairs", type=int, default=16,
                   help="first N held-out contents x first N styles (the card: 16; 0 = measure nothing, only "
                        "draw the figures)")
    p.add_argument("--size", type=int, default=256)
    # e.g. photos or paintings of a kind the held-out split lacks (the card's extra held-out sets)
    p.add_argument("--content-dir", type=Path, help="contents from here instead of DATA/val/content")
    p.add_argument("--style-dir", type=Path, help="styles from here instead of DATA/val/style")
    # the early card rows were measured in bf16 on AMX; on a CPU without native bf16 it is emulated, >10x slower
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 where the CPU has it natively, else fp32")
    p.add_argument("--out", type=Path, default=Path("weights"))
    p.add_argument("--scales", type=Path, help="also report the style loss normalised with these channel scales "
                                                "(--style-norm corpus): a training checkpoint's, or a .safetensors "
                                                "such as weights/heldout_style_scales.safetensors (the card's)")
    p.add_argument("--color-match", type=float, default=0.0,
                   help="measure and draw the product's output: the decoder's with the colour step at this "
                        "strength (the service's default is 0.5); 0 = the decoder alone, as the card's history")
    p.add_argument("--no-figures", action="store_true", help="only measure")
    p.add_argument("--norm-only", action="store_true",
                   help="with --scales: measure only with them (half the time; no raw style terms)")
    p.add_argument("--mirror-pairs", type=int, default=0,
                   help="also measure the pipeline's direction bias (mirror_gaps) on N contents x N styles")
    # the grid shows a spread of the held-out styles (textures, a photo portrait, painted
    # portraits and landscapes), not just the first few names, which are all ufoai textures
    p.add_argument("--grid-contents", type=int, nargs="+", default=[0, 2, 18, 21],
                   help="indices into the sorted held-out contents")
    p.add_argument("--grid-styles", type=int, nargs="+", default=[2, 9, 12, 15, 18, 21],
                   help="indices into the sorted held-out styles")
    p.add_argument("--compare", type=lambda v: tuple(map(int, v.split(","))), nargs="*",
                   default=[(0, 12), (2, 12), (18, 12), (2, 21)],
                   help="content,style index pairs for OUT/compare.jpg (one row per candidate and colour "
                        "step; needs 2 or more rows)")
    p.add_argument("--compare-color-matches", type=float, nargs="+",
                   help="draw each candidate in compare.jpg at each of these colour steps (default: --color-match)")
    args = p.parse_args()
    if args.norm_only and not args.scales:
        p.error("--norm-only needs --scales")
    all_c = sorted((args.content_dir or args.data / "val" / "content").glob("*.jpg"))
    all_s = sorted((args.style_dir or args.data / "val" / "style").glob("*.jpg"))
    rows = len(args.candidates) * len(args.compare_color_matches or [args.color_match])
    compared = args.compare if rows > 1 and args.compare else []
    picks = [("--grid-contents", args.grid_contents, all_c), ("--grid-styles", args.grid_styles, all_s),
             ("--compare", [c for c, _ in compared], all_c), ("--compare", [s for _, s in compared], all_s)]
    # before minutes of measuring: the default grid indices fit the 24 held-out styles, not e.g. the 8 paintings
    bad = [f"{flag} {i} ({len(files)} images there)" for flag, indices, files in picks for i in indices
           if not 0 <= i < len(files)]
    if bad and not args.no_figures:
        p.error("index out of range: " + "; ".join(bad))
    encoder = load_encoder()
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    amp = None if dtype == torch.float32 else dtype
    scales = load_style_scales(args.scales) if args.scales else None
    if args.pairs:
        contents = eval_images(args.content_dir or args.data / "val" / "content", args.pairs, args.size)
        styles = eval_images(args.style_dir or args.data / "val" / "style", args.pairs, args.size)
    for path in args.candidates if args.pairs else []:
        decoder = load_decoder(path).eval()
        cpu, color = torch.device("cpu"), args.color_match
        result = {} if args.norm_only else evaluate(encoder, decoder, contents, styles, cpu, amp,
                                                    color_match=color)[0]
        if scales is not None:
            normalised, _ = evaluate(encoder, decoder, contents, styles, cpu, amp, scales, color_match=color)
            if args.norm_only:  # content, grid and flip terms from this pass; no raw style terms
                result = {k: v for k, v in normalised.items() if not k.startswith("style")}
            result.update({f"norm_{k}": v for k, v in normalised.items() if k.startswith("style")})
        if args.mirror_pairs:
            result.update(mirror_gaps(encoder, decoder, contents[:args.mirror_pairs], styles[:args.mirror_pairs], amp))
        print(json.dumps({"decoder": str(path), "pairs": len(contents) * len(styles), "precision": str(dtype),
                          "color_match": color, **result}), flush=True)
    if args.no_figures:
        return

    args.out.mkdir(parents=True, exist_ok=True)  # a fresh folder, e.g. /tmp/x, is fine
    for path in args.runs:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        series = {"held-out content": [(r["step"], r["content"]) for r in rows],
                  "held-out style (as trained)": [(r["step"], r["style"]) for r in rows]}
        if all("grid8" in r for r in rows):
            series["held-out grid8"] = [(r["step"], r["grid8"]) for r in rows]
        if all("flipgap" in r for r in rows):  # 8-bit levels: / 10 to share the axis
            series["held-out flipgap / 10"] = [(r["step"], r["flipgap"] / 10) for r in rows]
        if all("flipgap_pipeline" in r for r in rows):
            series["held-out flipgap, pipeline / 10"] = [(r["step"], r["flipgap_pipeline"] / 10) for r in rows]
        plot(series, args.out / "heldout_losses.png", f"held-out losses over training ({path.parent.name})")

    precision = "auto" if torch.cuda.is_available() else args.precision  # on the CPU it resolves as dtype did
    stylizer = Stylizer.load(args.candidates[0], precision=precision)
    cfiles, sfiles = [all_c[i] for i in args.grid_contents], [all_s[i] for i in args.grid_styles]
    cell = 192
    sheet = Image.new("RGB", (cell * (len(sfiles) + 1), cell * (len(cfiles) + 1)), "white")
    for j, s in enumerate(sfiles):
        sheet.paste(open_image(s).resize((cell, cell)), ((j + 1) * cell, 0))
    for i, c in enumerate(cfiles):
        sheet.paste(open_image(c).resize((cell, cell)), (0, (i + 1) * cell))
        for j, s in enumerate(sfiles):
            out = stylizer.stylize(c, [s], content_size=384, style_size=384, color_match=args.color_match)
            sheet.paste(out.resize((cell, cell)), ((j + 1) * cell, (i + 1) * cell))
    sheet.save(args.out / "samples.jpg", quality=85)
    print(f"wrote {args.out / 'samples.jpg'}" + (f" and {args.out / 'heldout_losses.png'}" if args.runs else ""))
    if compared:
        pairs = [(all_c[c], all_s[s]) for c, s in compared]
        compare(args.candidates, pairs, args.out / "compare.jpg", precision,
                args.compare_color_matches or [args.color_match])


def compare(candidates: list[Path], pairs: list[tuple[Path, Path]], path: Path, precision: str,
            color_matches: list[float], size: int = 384) -> None:
    """One row per candidate decoder and colour step, one column per (content, style) pair, the
    top-left ``size`` x ``size`` of each result at full resolution: for faults a 192 px cell hides."""
    rows = [(cand, color) for cand in candidates for color in color_matches]
    sheet = Image.new("RGB", (size * len(pairs), size * len(rows)), "white")
    for i, (cand, color) in enumerate(rows):
        stylizer = Stylizer.load(cand, precision=precision)
        for j, (c, s) in enumerate(pairs):
            out = stylizer.stylize(c, [s], content_size=size, style_size=size, color_match=color)
            sheet.paste(out.crop((0, 0, size, size)), (j * size, i * size))
    sheet.save(path, quality=90)
    print(f"wrote {path}: rows {', '.join(f'{cand} at color_match {color}' for cand, color in rows)}")


if __name__ == "__main__":
    reexec_with_jemalloc([__file__, *sys.argv[1:]])
    main()
