"""What a training run reports: the progress bar, TensorBoard scalars and image grids, and the
held-out evaluations (eval.jsonl + a content|style|output grid PNG) every --eval-every steps."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from model.images import to_image
from training.evaluate import eval_images, evaluate
from training.losses import STYLE_LAYERS

if TYPE_CHECKING:  # the loop's own objects, passed in
    from training.data import Data
    from training.train import Trainer


@dataclass
class Logs:
    """Where a run reports: the progress bar, TensorBoard, the held-out set and its evaluations."""

    out: Path
    bar: object
    writer: object | None
    val: tuple[torch.Tensor, torch.Tensor] | None
    last: dict[str, float] = field(default_factory=dict)  # the latest loss terms, as numbers


def as_numbers(terms: dict) -> dict[str, float]:
    """Loss terms as logged (.item() waits for the GPU: called only when something uses them)."""
    out = {"content": terms["content"].item(), "style": terms["style"].sum().item()}
    return out | {k: terms[k].item() for k in ("grid", "flip") if k in terms}


def open_logs(t: Trainer, log: Callable[..., None]) -> Logs:
    args = t.args
    val = None
    if args.val_content_dir and args.val_style_dir and t.main_proc:
        val = (eval_images(args.val_content_dir, args.eval_contents, args.eval_size),
               eval_images(args.val_style_dir, args.eval_styles, args.eval_size))
    writer = None
    if t.main_proc and not args.no_tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(args.out / "tb"))
        except ImportError:
            log("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)", flush=True)
    from tqdm import tqdm

    bar = tqdm(total=args.max_iter, initial=t.step, disable=not t.main_proc, dynamic_ncols=True, unit="step")
    return Logs(args.out, bar, writer, val)


def evaluate_now(t: Trainer, logs: Logs) -> None:
    """Held-out losses and a content|style|output grid for the current weights (the average's
    with --ema-decay, the optimizer's as raw_*): eval.jsonl, a PNG, TensorBoard, the bar."""
    t.decoder.eval()
    result, grid = evaluate(t.encoder, t.ema.module if t.ema else t.decoder, *logs.val, t.device, t.amp, t.scales)
    if t.ema:
        raw = evaluate(t.encoder, t.decoder, *logs.val, t.device, t.amp, t.scales)[0]
        result |= {f"raw_{k}": v for k, v in raw.items()}
    t.decoder.train()
    result.update(step=t.step, wall_s=round(time.time() - t.started, 1))
    with open(logs.out / "eval.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    to_image(grid).save(logs.out / f"eval_{t.step:06d}.png")
    if logs.writer:
        for k, v in result.items():
            if k not in ("step", "wall_s"):
                logs.writer.add_scalar(f"eval/{k}", v, t.step)
        logs.writer.add_image("eval/content_style_output", grid, t.step)
    raw = f" (raw {result['raw_content']:.3f} / {result['raw_style']:.3f})" if t.ema else ""
    logs.bar.write(f"step {t.step}: held-out content {result['content']:.3f} style {result['style']:.3f}{raw}")


def report(t: Trainer, data: Data, logs: Logs, terms: dict, lr: float, content: torch.Tensor,
           style: torch.Tensor) -> None:
    """After a step (rank 0): the bar, TensorBoard scalars and image grids, evaluations when due."""
    args, step, writer = t.args, t.step, logs.writer
    logs.bar.update(1)
    if step % 10 == 0 or step % args.log_every == 0 or step % args.save_every == 0 or step == args.max_iter:
        logs.last = as_numbers(terms)
        logs.bar.set_postfix(**{k: f"{v:.3f}" for k, v in logs.last.items()}, lr=f"{lr:.2e}", skipped=data.skipped)
    if writer and step % args.log_every == 0:
        for k, v in logs.last.items():
            writer.add_scalar(f"loss/{k}", v, step)
        for name, x in zip(STYLE_LAYERS, terms["style"]):
            writer.add_scalar(f"loss/style_{name}", x.item(), step)
        writer.add_scalar("lr", lr, step)
        writer.add_scalar("data/skipped_files", data.skipped, step)
    if writer and step % args.grid_every == 0:
        k = min(4, content.shape[0])
        grid = torch.cat([content[:k], style[:k], terms["output"][:k].float().clamp(0, 1)], dim=3)
        writer.add_images("train/content_style_output", grid.float().cpu(), step)
    if logs.val is not None and step % args.eval_every == 0:
        evaluate_now(t, logs)
