"""The training job's command line: ``python -m training.train --help`` (grouped: data,
optimisation, loss, run). The defaults are the paper's / reference code's."""

from __future__ import annotations

import argparse
from pathlib import Path


def _data_args(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data")
    data.add_argument("--content-dir", type=Path, required=True, help="content images (searched recursively)")
    data.add_argument("--style-dir", type=Path, required=True, help="style images (searched recursively)")
    data.add_argument("--val-content-dir", type=Path, help="held-out content images for evaluation")
    data.add_argument("--val-style-dir", type=Path, help="held-out style images for evaluation")
    data.add_argument("--image-size", type=int, default=512, help="shorter side before cropping")
    data.add_argument("--crop-size", type=int, default=256)
    data.add_argument("--scale-jitter", type=float, default=0.0,
                      help="cut crops up to (1 + this) x --crop-size and scale them down to it (0 = none, as the "
                           "paper): moves small style images' 8x8 JPEG blocks off the decoder's 8-px lattice")
    data.add_argument("--mirror-crops", action="store_true",
                      help="turn each content and style crop by a random one of the square's 8 symmetries")
    data.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per loader")
    data.add_argument("--preload", action="store_true",
                      help="decode every image once and keep it on the device (small corpora, fast GPUs)")


def _optimisation_args(p: argparse.ArgumentParser) -> None:
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--max-iter", type=int, default=160_000, help="total steps (the paper: 160k)")
    opt.add_argument("--batch-size", type=int, default=8)
    opt.add_argument("--lr", type=float, default=1e-4)
    opt.add_argument("--lr-decay", type=float, default=5e-5, help="lr = lr / (1 + lr_decay * step)")
    opt.add_argument("--warmup-steps", type=int, default=0, help="linear lr warm-up from 0 (0 = none, as the paper)")
    opt.add_argument("--ema-decay", type=float, default=0.0,
                     help="also keep an exponential moving average of the weights (training/average.py; 0.999 = "
                          "about the last 1,000 steps); evals and exports then use it, the optimizer's weights' "
                          "evals are logged as raw_*; 0 = none, as the paper")
    opt.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=True,
                     help="let the average forget the starting weights fast (decay (1 + n) / (10 + n) until it "
                          "reaches --ema-decay); --no-ema-warmup keeps a warm start's trained weights in it")


def _loss_args(p: argparse.ArgumentParser) -> None:
    loss = p.add_argument_group("loss")
    loss.add_argument("--content-weight", type=float, default=1.0)
    loss.add_argument("--style-weight", type=float, default=10.0)
    loss.add_argument("--style-norm", choices=["corpus", "none"], default="corpus",
                      help="corpus: weigh each style-loss channel by 1 / its mean activation over "
                           "--style-norm-images training images (training/losses.py); none: the paper's formula")
    loss.add_argument("--style-norm-images", type=int, default=128, help="images (half content, half style) for it")
    loss.add_argument("--style-scales", type=Path,
                      help="take the corpus scales from this file (a checkpoint or .safetensors, e.g. "
                           "weights/heldout_style_scales.safetensors) instead of computing them")
    loss.add_argument("--recon-steps", type=int, default=0,
                      help="first train the decoder to reconstruct images from their own relu4_1 features for "
                           "this many steps (no style loss), then AdaIN training (0 = none, as the paper)")
    loss.add_argument("--recon-pixel-weight", type=float, default=100.0, help="pixel MSE weight during --recon-steps")
    loss.add_argument("--grid-weight", type=float, default=0.0,
                      help="weight of a penalty on the outputs' 8-px grid (training/quality.py grid_penalty)")
    loss.add_argument("--flip-weight", type=float, default=0.0,
                      help="weight of a mirror-consistency term on the whole pipeline (training/quality.py "
                           "flip_gap; the decoder runs on twice the batch), against strokes that point one way")


def _run_args(p: argparse.ArgumentParser) -> None:
    run = p.add_argument_group("run")
    run.add_argument("--out", type=Path, required=True, help="run folder: checkpoint, logs, grids")
    run.add_argument("--resume", type=Path, help="checkpoint to continue (model, optimizer, scaler, step, RNG, data)")
    run.add_argument("--init", type=Path, help="decoder weights to start from (e.g. weights/decoder.safetensors)")
    run.add_argument("--save-every", type=int, default=1000)
    run.add_argument("--eval-every", type=int, default=1000)
    run.add_argument("--log-every", type=int, default=50, help="TensorBoard scalars")
    run.add_argument("--grid-every", type=int, default=1000, help="TensorBoard training image grids")
    run.add_argument("--eval-contents", type=int, default=4, help="held-out contents used (x styles = pairs)")
    run.add_argument("--eval-styles", type=int, default=4, help="held-out styles used")
    run.add_argument("--eval-size", type=int, default=256, help="held-out images: shorter side, centre crop")
    run.add_argument("--device", default="auto")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    run.add_argument("--time-limit", type=float, default=0, help="stop (and save) after this many seconds; 0 = none")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--no-tensorboard", action="store_true")


def parse_args(argv: list[str] | None = None, description: str = "") -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for group in (_data_args, _optimisation_args, _loss_args, _run_args):
        group(p)
    return p.parse_args(argv)
